/**
 * A small seeded PRNG for the chaos server. Determinism is the point: the same scenario seed must give
 * the same fault sequence on every machine and every run, so this is a fixed, documented algorithm
 * (sfc32, seeded through splitmix32) rather than `Math.random` or Effect's `Random` (whose algorithm
 * is an implementation detail we must not depend on for reproducible chaos).
 *
 * @internal
 */

/** splitmix32 step: spreads a 32-bit seed into well-mixed words for sfc32's state. */
const splitmix32 = (state: number): readonly [value: number, next: number] => {
  const next = (state + 0x9e3779b9) | 0
  let z = next
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  z ^= z >>> 16
  return [z >>> 0, next]
}

/** FNV-1a over a string, so a stream name ("route:0/faults") can be folded into a seed. */
export const hashString = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/**
 * sfc32 ("small fast counting"): 128-bit state, passes PractRand to 2^42+ bytes, and is trivially
 * portable. `next()` returns a float in [0, 1).
 */
export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number, stream = "") {
    let s = (Math.trunc(seed) ^ hashString(stream)) | 0
    const words: Array<number> = []
    for (let i = 0; i < 4; i++) {
      const [value, next] = splitmix32(s)
      words.push(value)
      s = next
    }
    this.a = words[0] ?? 0
    this.b = words[1] ?? 0
    this.c = words[2] ?? 0
    this.d = words[3] ?? 1
    // Discard the first outputs: sfc32 recommends a short warm-up to decorrelate close seeds.
    for (let i = 0; i < 12; i++) this.nextUint32()
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return t >>> 0
  }

  /** A float in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296
  }

  /** A standard normal variate (Box–Muller; one of the pair is discarded for simplicity). */
  nextGaussian(): number {
    // 1 - next() is in (0, 1], so the logarithm is finite.
    const u1 = 1 - this.next()
    const u2 = this.next()
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)
  }

  /** `bytes` random bytes as lower-case hex. */
  hex(bytes: number): string {
    let out = ""
    while (out.length < bytes * 2) out += this.nextUint32().toString(16).padStart(8, "0")
    return out.slice(0, bytes * 2)
  }

  /** `length` characters from [A-Za-z0-9], the alphabet of provider ids such as `msg_01…`. */
  alphanumeric(length: number): string {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    let out = ""
    for (let i = 0; i < length; i++) out += alphabet[this.nextUint32() % alphabet.length] ?? "A"
    return out
  }
}
