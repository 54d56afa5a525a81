/**
 * The Lua scripts behind the fleet breaker and the shared retry budget, each atomic (Redis runs a
 * script to completion before any other command) and timed by Redis' own `TIME`, so workers on
 * machines with skewed clocks agree.
 *
 * **Breaker** — one hash per key, `<prefix>breaker:{<key>}`: `s` (`t` tripped = open or half-open,
 * `c` closed), `ou` (when the fleet's open period ends, Redis ms), `p` / `pu` (the process that owns
 * the half-open probe, and until when its claim holds), `e` (the epoch: raised on every trip and
 * close, never below Redis' clock in ms, so it keeps rising even after the hash expired; messages
 * and claims carry it, and older news is ignored). The hash lives a day after its last change.
 *
 * **Budget** — one hash per key, `<prefix>budget:{<key>}`: `d<second>` deposits and `w<second>`
 * withdrawals per Redis second; fields older than the window are deleted as they are read. The
 * arithmetic is `RetryBudget.make`'s: over the window, `balance = reserve + ratio · deposits −
 * withdrawals`, and a retry is granted while `balance ≥ 1` (a property test checks the two agree).
 *
 * @internal
 */
import { script, type Script } from "./scripts.js"

export type { Script }

const now = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

const DAY_MS = 86_400_000

/** @internal */
export const breakerTtlMs = DAY_MS

/**
 * A trip: the fleet is open for at least `ARGV[1]` ms more (an open period that ends later is kept),
 * and any probe claim is void. ARGV: openForMs. Returns `{epoch, openForMs}` (what is left of the
 * fleet's open period).
 *
 * @internal
 */
export const trip: Script = script(`${now}
local v = redis.call('HMGET', KEYS[1], 's', 'ou', 'e')
local e = math.max((tonumber(v[3]) or 0) + 1, now)
local ou = now + tonumber(ARGV[1])
if v[1] == 't' then ou = math.max(ou, tonumber(v[2]) or 0) end
redis.call('HSET', KEYS[1], 's', 't', 'ou', ou, 'e', e)
redis.call('HDEL', KEYS[1], 'p', 'pu')
redis.call('PEXPIRE', KEYS[1], ${DAY_MS})
return { e, ou - now }
`)

/**
 * A half-open breaker asks to probe. ARGV: owner, leaseMs, the epoch the caller knows.
 * Returns `{verdict, epoch, ms}`: 1 granted (the caller owns the probe for `leaseMs`), 2 closed (the
 * fleet closed after the caller's news), 3 open (`ms` left of the fleet's open period), 4 busy
 * (another owner's probe holds for `ms`). A closed fleet with no news the caller lacks means the
 * caller's trip was never recorded (Redis was away, or the record expired): it is recorded now and the
 * caller probes.
 *
 * @internal
 */
export const claim: Script = script(`${now}
local v = redis.call('HMGET', KEYS[1], 's', 'ou', 'p', 'pu', 'e')
local e = tonumber(v[5]) or 0
local lease = tonumber(ARGV[2])
if v[1] ~= 't' then
  if e > tonumber(ARGV[3]) then return { 2, e, 0 } end
  e = math.max(e + 1, now)
  redis.call('HSET', KEYS[1], 's', 't', 'ou', now, 'p', ARGV[1], 'pu', now + lease, 'e', e)
  redis.call('PEXPIRE', KEYS[1], ${DAY_MS})
  return { 1, e, 0 }
end
local ou = tonumber(v[2]) or 0
if ou > now then return { 3, e, ou - now } end
local pu = tonumber(v[4]) or 0
if v[3] and v[3] ~= ARGV[1] and pu > now then return { 4, e, pu - now } end
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'pu', now + lease)
redis.call('PEXPIRE', KEYS[1], ${DAY_MS})
return { 1, e, 0 }
`)

/**
 * The owner's probe succeeded: the fleet closes — only if the caller still owns the probe (a trip
 * since then voided the claim, and that trip's news wins). ARGV: owner. Returns `{closed, epoch}`.
 *
 * @internal
 */
export const close: Script = script(`${now}
local v = redis.call('HMGET', KEYS[1], 's', 'p', 'e')
local e = tonumber(v[3]) or 0
if v[1] ~= 't' or v[2] ~= ARGV[1] then return { 0, e } end
e = math.max(e + 1, now)
redis.call('HSET', KEYS[1], 's', 'c', 'e', e)
redis.call('HDEL', KEYS[1], 'ou', 'p', 'pu')
redis.call('PEXPIRE', KEYS[1], ${DAY_MS})
return { 1, e }
`)

/**
 * The owner's probe ended without a verdict (interrupted, never sent): its claim is given back.
 * ARGV: owner. Returns 1 when it was the owner's.
 *
 * @internal
 */
export const release: Script = script(`
if redis.call('HGET', KEYS[1], 'p') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'p', 'pu')
return 1
`)

/**
 * Deposits, then withdraws up to `want` retries while the balance allows. ARGV: deposits, want,
 * ratio, reserve (retries per window), window (seconds). Returns `{granted, balance}` (the balance
 * after the withdrawal, as a string: it is fractional).
 *
 * @internal
 */
export const budget: Script = script(`${now}
local second = math.floor(now / 1000)
local deposits = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local ratio = tonumber(ARGV[3])
local window = tonumber(ARGV[5])
if deposits > 0 then redis.call('HINCRBY', KEYS[1], 'd' .. second, deposits) end
local fields = redis.call('HGETALL', KEYS[1])
local d = 0
local w = 0
for i = 1, #fields, 2 do
  local name = fields[i]
  local at = tonumber(string.sub(name, 2))
  if at == nil or at <= second - window then
    redis.call('HDEL', KEYS[1], name)
  elseif string.sub(name, 1, 1) == 'd' then
    d = d + tonumber(fields[i + 1])
  else
    w = w + tonumber(fields[i + 1])
  end
end
local balance = tonumber(ARGV[4]) + ratio * d - w
local granted = 0
while granted < want and balance >= 1 do
  granted = granted + 1
  balance = balance - 1
end
if granted > 0 then redis.call('HINCRBY', KEYS[1], 'w' .. second, granted) end
redis.call('PEXPIRE', KEYS[1], (window + 1) * 1000)
return { granted, string.format('%.17g', balance) }
`)
