/**
 * The Lua scripts that keep a route's rate-limit state in one Redis hash, each one atomic (Redis runs
 * a script to completion before any other command), with Redis' own `TIME` as the clock so workers on
 * machines with skewed clocks agree.
 *
 * The hash (`<prefix>ratelimit:{<key>}`) holds, per dimension `d` of `r` (requests), `t` (tokens),
 * `i` (input tokens), `o` (output tokens): `da` the tokens available as of `du` (Redis ms; negative =
 * debt), and `dl` a per-minute limit learned from the provider's headers; plus `cool`, the Redis time
 * until which every caller waits (a 429's Retry-After, a window the provider said is empty). A
 * dimension has a bucket when the caller configured a limit for it (passed with every call, so every
 * worker must configure the same) or a limit was learned; the lower of the two is the rate. The
 * arithmetic is `internal/tokenBucket.ts`'s: capacity = the per-minute limit, continuous refill. The
 * hash expires once every bucket would be full again and the cooldown is over.
 *
 * @internal
 */
import { createHash } from "node:crypto"
import type { Redis } from "ioredis"

/** A script and its SHA-1 (for EVALSHA). @internal */
export interface Script {
  readonly lua: string
  readonly sha: string
}

/** A script with its SHA-1. @internal */
export const script = (lua: string): Script => ({ lua, sha: createHash("sha1").update(lua).digest("hex") })

const prelude = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'cool', 'ra', 'ru', 'rl', 'ta', 'tu', 'tl', 'ia', 'iu', 'il', 'oa', 'ou', 'ol')
local names = { 'r', 't', 'i', 'o' }
local cool = tonumber(v[1]) or 0
local function learnedOf(i) return tonumber(v[2 + (i - 1) * 3 + 2]) end
local function limitOf(i, learned)
  local configured = tonumber(ARGV[i])
  if learned ~= nil and learned > 0 and (configured == nil or learned < configured) then return learned end
  return configured
end
local function bucket(i, limit)
  local base = 2 + (i - 1) * 3
  local a = tonumber(v[base])
  local u = tonumber(v[base + 1])
  if a == nil or u == nil then return limit end
  if now > u and a < limit then a = a + (now - u) * limit / 60000 end
  if a > limit then a = limit end
  return a
end
local function store(i, a)
  redis.call('HSET', KEYS[1], names[i] .. 'a', string.format('%.17g', a), names[i] .. 'u', now)
end
local function expire(dims)
  local ttl = 60000
  for i = 1, 4 do
    local d = dims[i]
    if d ~= nil and d.limit > 0 and d.a < d.limit then
      local full = (d.limit - d.a) * 60000 / d.limit
      if full > ttl then ttl = full end
    end
  end
  if cool - now > ttl then ttl = cool - now end
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl) + 1000)
end
`

/**
 * Refill, then take every cost if all fit (and no cooldown holds the route), else take nothing.
 * ARGV[1..4]: configured per-minute limits (`''` = none); ARGV[5..8]: costs.
 * Returns `{1, 0, mask}` (admitted; `mask` = the dimensions charged, bit i-1 for dimension i) or
 * `{0, waitMs, 0}` (`waitMs` -1 = never: a limit of 0).
 *
 * @internal
 */
export const admit: Script = script(`${prelude}
local dims = {}
local wait = 0
if cool > now then wait = cool - now end
for i = 1, 4 do
  local limit = limitOf(i, learnedOf(i))
  if limit ~= nil then
    local a = bucket(i, limit)
    dims[i] = { limit = limit, a = a }
    local deficit = math.min(tonumber(ARGV[4 + i]) or 0, limit) - a
    if deficit > 1e-6 then
      if limit <= 0 then return { 0, -1, 0 } end
      local w = math.ceil(deficit * 60000 / limit - 1e-6)
      if w < 1 then w = 1 end
      if w > wait then wait = w end
    end
  end
end
if wait > 0 then return { 0, math.ceil(wait), 0 } end
local mask = 0
local bit = 1
for i = 1, 4 do
  local d = dims[i]
  if d ~= nil then
    d.a = d.a - (tonumber(ARGV[4 + i]) or 0)
    store(i, d.a)
    mask = mask + bit
  end
  bit = bit * 2
end
expire(dims)
return { 1, 0, mask }
`)

/**
 * After a call, or when a rate-limit snapshot arrives: corrections, learned limits, lowered buckets,
 * a cooldown — one atomic step.
 * ARGV[1..4]: configured limits; ARGV[5..8]: deltas (+ refund, − more debt); ARGV[9..12]: learned
 * limits (`''` = none); ARGV[13..16]: what the provider said is left (`''` = nothing said);
 * ARGV[17]: how old that is (ms; the bucket refilled meanwhile); ARGV[18]: a cooldown, ms from now
 * (0 = none; an earlier one never shortens a later one).
 *
 * @internal
 */
export const update: Script = script(`${prelude}
local age = tonumber(ARGV[17]) or 0
if age < 0 then age = 0 end
local dims = {}
for i = 1, 4 do
  local learned = learnedOf(i)
  local newLearned = tonumber(ARGV[8 + i])
  if newLearned ~= nil and newLearned > 0 and newLearned ~= learned then
    learned = newLearned
    redis.call('HSET', KEYS[1], names[i] .. 'l', string.format('%.17g', learned))
  end
  local limit = limitOf(i, learned)
  if limit ~= nil then
    local a = bucket(i, limit)
    local delta = tonumber(ARGV[4 + i]) or 0
    local remaining = tonumber(ARGV[12 + i])
    if delta ~= 0 or remaining ~= nil or newLearned ~= nil then
      a = math.min(limit, a + delta)
      if remaining ~= nil then
        local r = remaining + age * limit / 60000
        if r < a then a = r end
      end
      store(i, a)
    end
    dims[i] = { limit = limit, a = a }
  end
end
local c = tonumber(ARGV[18]) or 0
if c > 0 and now + c > cool then
  cool = now + c
  redis.call('HSET', KEYS[1], 'cool', string.format('%.17g', cool))
end
expire(dims)
return 1
`)

/**
 * Reads without writing: the requests and tokens available now (`'inf'` when there is no bucket) and
 * the cooldown left (ms). ARGV[1..4]: configured limits.
 *
 * @internal
 */
export const peek: Script = script(`${prelude}
local out = {}
for i = 1, 2 do
  local limit = limitOf(i, learnedOf(i))
  if limit == nil then out[i] = 'inf' else out[i] = string.format('%.17g', bucket(i, limit)) end
end
local c = 0
if cool > now then c = math.ceil(cool - now) end
return { out[1], out[2], tostring(c) }
`)

/**
 * Runs a script by its SHA-1, loading it on `NOSCRIPT` (first use, or after a Redis restart).
 *
 * @internal
 */
export const run = (
  client: Redis,
  s: Script,
  key: string,
  args: ReadonlyArray<string | number>
): Promise<unknown> =>
  client.evalsha(s.sha, 1, key, ...args).catch((error: unknown) =>
    error instanceof Error && error.message.startsWith("NOSCRIPT")
      ? client.eval(s.lua, 1, key, ...args)
      : Promise.reject(error)
  )
