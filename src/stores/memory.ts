import { fieldLength, FIELDS_LENGTH, PRESENT, storedText, type ConditionalPatch, type Patch, type Store } from '../store.js'
import { decodeRecord, decodeValue, encodeValue, incremented, PROTOTYPE_KEYS } from '../values.js'

export interface MemoryStoreOptions {
  /**
   * The most sessions kept; past it the least recently used session is evicted. Default 100 000
   * (a 1 KB session costs about 2 KB of heap).
   */
  maxSessions?: number
}

interface Entry {
  readonly id: string
  /**
   * Each top-level key's JSON encoding: reads decode a fresh copy, so callers never share objects.
   * Never changed in place (a write puts a new object here), so a read may hand it out as it is.
   * An ordinary object, copied with a spread (five times cheaper than into a prototype-free one):
   * it is read through own keys only (`own`), and prototype keys are never written to it. It
   * carries its `FIELDS_LENGTH`, kept up to date by each write from the keys it changes.
   */
  fields: Readonly<Record<string, string>> & { [FIELDS_LENGTH]: number }
  expiresAt: number
  /** Neighbours in the recency list, from the least recently used (`oldest`) to the most. */
  older: Entry | undefined
  newer: Entry | undefined
}

// Expired entries are dropped when met; every SWEEP_EVERY writes, SWEEP_SCAN more entries are also
// checked (a sweep walks the store from the least recently used on, and goes round), so memory is
// reclaimed without a timer.
const SWEEP_EVERY = 64
const SWEEP_SCAN = 32

/**
 * The embedded default store: one process, no dependencies. Honours expiry, keeps at most
 * `maxSessions` sessions (least recently used evicted first), and runs no timers, so it never
 * keeps a process alive. Every operation is synchronous inside, hence atomic.
 *
 * Recency is a list threaded through the entries: a read moves its entry to the newest end with a
 * few pointer writes, where moving it in the Map (delete, then set) cost a read more than the rest
 * of the store's work together.
 */
export class MemoryStore implements Store {
  readonly #entries = new Map<string, Entry>()
  readonly #maxSessions: number
  #writes = 0
  #oldest: Entry | undefined
  #newest: Entry | undefined
  /** Where the next sweep starts. */
  #sweepAt: Entry | undefined

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

  /** Answers at once, not with a promise: a request that only reads its session then waits for nothing. */
  getEncoded(id: string): Readonly<Record<string, string>> | undefined {
    return this.#live(id)?.fields
  }

  async apply(id: string, patch: Patch): Promise<void> {
    this.#write(id, patch)
  }

  async applyIf(id: string, patch: ConditionalPatch): Promise<boolean> {
    const fields = this.#live(id)?.fields
    for (const [key, expected] of Object.entries(patch.expect)) {
      const current = own(fields, key)
      if (expected === PRESENT ? current === undefined : expected === undefined ? current !== undefined : current !== encodeValue(expected)) return false
    }
    this.#write(id, patch)
    return true
  }

  async increment(id: string, key: string, by: number, ttlMs: number): Promise<number> {
    const current = own(this.#live(id)?.fields, key)
    const sum = incremented(key, current === undefined ? undefined : decodeValue(current), by)
    this.#write(id, { set: { [key]: sum }, ttlMs })
    return sum
  }

  async touch(id: string, ttlMs: number): Promise<void> {
    const entry = this.#live(id)
    if (entry) entry.expiresAt = Date.now() + ttlMs
  }

  async destroy(id: string): Promise<void> {
    const entry = this.#entries.get(id)
    if (entry) this.#remove(entry)
  }

  /** The entry if present and unexpired, marked most recently used. */
  #live(id: string): Entry | undefined {
    const entry = this.#entries.get(id)
    if (!entry) return undefined
    if (entry.expiresAt <= Date.now()) {
      this.#remove(entry)
      return undefined
    }
    this.#makeNewest(entry)
    return entry
  }

  #write(id: string, patch: Patch): void {
    const entry = this.#live(id)
    const fields: Record<string, string> & { [FIELDS_LENGTH]: number } = entry ? { ...entry.fields } : { [FIELDS_LENGTH]: 0 }
    let length = fields[FIELDS_LENGTH]
    // Prototype keys would not be kept by an ordinary object, and no read returns them anyway.
    for (const key in patch.set) {
      if (PROTOTYPE_KEYS.has(key)) continue
      const before = own(fields, key)
      if (before !== undefined) length -= fieldLength(key, before)
      const text = (fields[key] = storedText(patch, key))
      length += fieldLength(key, text)
    }
    if (patch.unset) {
      for (const key of patch.unset) {
        const before = own(fields, key)
        if (before === undefined) continue
        length -= fieldLength(key, before)
        delete fields[key]
      }
    }
    fields[FIELDS_LENGTH] = length
    const now = Date.now()
    if (entry) {
      entry.fields = fields
      entry.expiresAt = now + patch.ttlMs
    } else {
      const created: Entry = { id, fields, expiresAt: now + patch.ttlMs, older: undefined, newer: undefined }
      this.#entries.set(id, created)
      this.#makeNewest(created)
      if (this.#entries.size > this.#maxSessions) this.#remove(this.#oldest as Entry)
    }
    if (++this.#writes % SWEEP_EVERY === 0) this.#sweep(now)
  }

  #makeNewest(entry: Entry): void {
    if (entry === this.#newest) return
    this.#unlink(entry)
    entry.older = this.#newest
    if (this.#newest) this.#newest.newer = entry
    this.#newest = entry
    this.#oldest ??= entry
  }

  #remove(entry: Entry): void {
    this.#unlink(entry)
    this.#entries.delete(entry.id)
  }

  #unlink(entry: Entry): void {
    if (this.#sweepAt === entry) this.#sweepAt = entry.newer
    if (entry.older) entry.older.newer = entry.newer
    else if (this.#oldest === entry) this.#oldest = entry.newer
    if (entry.newer) entry.newer.older = entry.older
    else if (this.#newest === entry) this.#newest = entry.older
    entry.older = entry.newer = undefined
  }

  /** Drops expired sessions among the next few, continuing where the last sweep stopped. */
  #sweep(now: number): void {
    for (let scanned = 0; scanned < SWEEP_SCAN; scanned++) {
      const entry = this.#sweepAt ?? this.#oldest
      if (!entry) return
      this.#sweepAt = entry.newer
      if (entry.expiresAt <= now) this.#remove(entry)
      if (!this.#sweepAt) return
    }
  }
}

/** A field's stored text, looked up among own keys only. */
function own(fields: Readonly<Record<string, string>> | undefined, key: string): string | undefined {
  return fields !== undefined && Object.hasOwn(fields, key) ? fields[key] : undefined
}
