/**
 * A continuously refilled token bucket measured per minute, the model both providers document for
 * RPM/TPM limits: capacity = the per-minute limit, refilled at limit/60 000 per millisecond.
 *
 * @internal
 */
export class Bucket {
  private level: number
  private updatedAt: number

  constructor(readonly capacity: number, now: number) {
    this.level = capacity
    this.updatedAt = now
  }

  private get perMs(): number {
    return this.capacity / 60_000
  }

  /** Adds what has dripped in since the last call (time never runs backwards here). */
  refill(now: number): void {
    const elapsed = Math.max(0, now - this.updatedAt)
    this.level = Math.min(this.capacity, this.level + elapsed * this.perMs)
    this.updatedAt = Math.max(this.updatedAt, now)
  }

  /** Milliseconds until `amount` is available (0 if it is now; Infinity if it never fits). */
  msUntil(amount: number): number {
    if (amount > this.capacity) return Number.POSITIVE_INFINITY
    return amount <= this.level ? 0 : (amount - this.level) / this.perMs
  }

  take(amount: number): void {
    this.level -= amount
  }

  /** Whole units available, as a `remaining` header shows them. */
  get remaining(): number {
    return Math.max(0, Math.floor(this.level + 1e-9))
  }

  /** How much has been used of the capacity, rounded up. */
  get used(): number {
    return Math.max(0, Math.ceil(this.capacity - this.level - 1e-9))
  }

  /** Milliseconds until the bucket is full again (the providers' "reset"). */
  get msUntilFull(): number {
    return (this.capacity - this.level) / this.perMs
  }
}
