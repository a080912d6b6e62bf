import { SessionValueError } from '../errors.js'
import type { ConditionalPatch, Patch, Store } from '../store.js'
import { decodeRecord, decodeValue, encodeValue, PROTOTYPE_KEYS } from '../values.js'

export interface MemoryStoreOptions {
  /**
   * The most sessions kept; past it the least recently used session is evicted. Default 100 000
   * (a 1 KB session costs about 2 KB of heap).
   */
  maxSessions?: number
}

interface Entry {
  /**
   * Each top-level key's JSON encoding: reads decode a fresh copy, so callers never share objects.
   * Never changed in place (a write puts a new object here), so a read may hand it out as it is.
   * An ordinary object, copied with a spread (five times cheaper than into a prototype-free one):
   * it is read through own keys only (`own`), and prototype keys are never written to it.
   */
  fields: Readonly<Record<string, string>>
  expiresAt: number
}

// Expired entries are dropped when met; every SWEEP_EVERY writes, SWEEP_SCAN more entries are also
// checked (a sweep goes round the store), so memory is reclaimed without a timer.
const SWEEP_EVERY = 64
const SWEEP_SCAN = 32

/**
 * The embedded default store: one process, no dependencies. Honours expiry, keeps at most
 * `maxSessions` sessions (least recently used evicted first), and runs no timers, so it never
 * keeps a process alive. Every operation is synchronous inside, hence atomic.
 */
export class MemoryStore implements Store {
  readonly #entries = new Map<string, Entry>()
  readonly #maxSessions: number
  #writes = 0

  constructor(options: MemoryStoreOptions = {}) {
    const { maxSessions = 100_000 } = options
    if (!Number.isInteger(maxSessions) || maxSessions < 1) {
      throw new TypeError(`MemoryStore option maxSessions must be a positive integer, got ${String(maxSessions)}`)
    }
    this.#maxSessions = maxSessions
  }

  /** Sessions held now, expired ones not yet swept included. */
  get size(): number {
    return this.#entries.size
  }

  async get(id: string): Promise<Record<string, unknown> | undefined> {
    const entry = this.#live(id)
    return entry ? decodeRecord(Object.entries(entry.fields)) : undefined
  }

  async getEncoded(id: string): Promise<Record<string, string> | undefined> {
    return this.#live(id)?.fields
  }

  async apply(id: string, patch: Patch): Promise<void> {
    this.#write(id, patch)
  }

  async applyIf(id: string, patch: ConditionalPatch): Promise<boolean> {
    const fields = this.#live(id)?.fields
    for (const [key, expected] of Object.entries(patch.expect)) {
      const current = own(fields, key)
      if (expected === undefined ? current !== undefined : current !== encodeValue(expected)) return false
    }
    this.#write(id, patch)
    return true
  }

  async increment(id: string, key: string, by: number, ttlMs: number): Promise<number> {
    const current = own(this.#live(id)?.fields, key)
    const value = current === undefined ? 0 : decodeValue(current)
    if (typeof value !== 'number') throw new SessionValueError(key, 'cannot increment: it does not hold a number')
    const sum = value + by
    this.#write(id, { set: { [key]: sum }, ttlMs })
    return sum
  }

  async touch(id: string, ttlMs: number): Promise<void> {
    const entry = this.#live(id)
    if (entry) entry.expiresAt = Date.now() + ttlMs
  }

  async destroy(id: string): Promise<void> {
    this.#entries.delete(id)
  }

  /** The entry if present and unexpired, marked most recently used. */
  #live(id: string): Entry | undefined {
    const entry = this.#entries.get(id)
    if (!entry) return undefined
    this.#entries.delete(id)
    if (entry.expiresAt <= Date.now()) return undefined
    this.#entries.set(id, entry)
    return entry
  }

  #write(id: string, patch: Patch): void {
    const now = Date.now()
    const entry = this.#entries.get(id)
    const fields: Record<string, string> = entry && entry.expiresAt > now ? { ...entry.fields } : {}
    // Prototype keys would not be kept by an ordinary object, and no read returns them anyway.
    for (const key in patch.set) if (!PROTOTYPE_KEYS.has(key)) fields[key] = encodeValue(patch.set[key])
    if (patch.unset) for (const key of patch.unset) delete fields[key]
    // Deleted and set again, so it is the most recently used.
    this.#entries.delete(id)
    this.#entries.set(id, { fields, expiresAt: now + patch.ttlMs })
    if (this.#entries.size > this.#maxSessions) this.#evictOldest()
    if (++this.#writes % SWEEP_EVERY === 0) this.#sweep()
  }

  // Finding the front of a Map walks past every entry deleted there, so a walk from the start on
  // every write would slow writes down as the store churns. These cursors go on from where they
  // stopped: a live Map iterator sees entries re-inserted behind it, so what it yields next is
  // always the least recently used entry it has not passed yet.
  #evictCursor: Iterator<string> | undefined
  #sweepCursor: Iterator<[string, Entry]> | undefined

  /** Evicts the least recently used session. */
  #evictOldest(): void {
    for (;;) {
      this.#evictCursor ??= this.#entries.keys()
      const next = this.#evictCursor.next()
      if (next.done) {
        this.#evictCursor = undefined
        continue
      }
      this.#entries.delete(next.value)
      return
    }
  }

  /** Drops expired sessions among the next few, continuing where the last sweep stopped. */
  #sweep(): void {
    const now = Date.now()
    this.#sweepCursor ??= this.#entries.entries()
    for (let scanned = 0; scanned < SWEEP_SCAN; scanned++) {
      const next = this.#sweepCursor.next()
      if (next.done) {
        this.#sweepCursor = undefined
        return
      }
      const [id, entry] = next.value
      if (entry.expiresAt <= now && this.#entries.get(id) === entry) this.#entries.delete(id)
    }
  }
}

/** A field's stored text, looked up among own keys only. */
function own(fields: Readonly<Record<string, string>> | undefined, key: string): string | undefined {
  return fields !== undefined && Object.hasOwn(fields, key) ? fields[key] : undefined
}
