import { ReadLog } from './conflicts.js'
import { SessionTooLargeError, SessionValueError } from './errors.js'
import { ENCODED, fieldLength, FIELDS_LENGTH, type EncodedPatch } from './store.js'
import { Tracker } from './tracking.js'
import { assertDataKey, assertStorable, decodeField, emptyRecord, encodeValue, isDataField } from './values.js'

/**
 * `encodeValue` for top-level `key`. Values are checked as they are assigned, so this fails only for
 * one changed behind the tracker's back (through a reference kept to a nested object) into what
 * JSON cannot hold, most likely a cycle: the error names the key, as at an assignment.
 */
function encodeField(key: string, value: unknown): string {
  try {
    return encodeValue(value)
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/\s+/g, ' ') : String(error)
    throw new SessionValueError(key, `the value cannot be encoded as JSON (${reason}); was it changed through a reference kept from before it was assigned?`)
  }
}

/** Marks, in `#data`, a loaded key that this request removed. */
const ABSENT: unique symbol = Symbol('absent')

/** A request's pending changes as a patch, with the texts of values already encoded. */
export type Pending = Omit<EncodedPatch, 'ttlMs'>

/** What the key sets below read as until a key goes in (most requests change nothing). */
const NONE: ReadonlySet<string> = new Set()

/**
 * What one request's session holds and what it changed: the data (loaded values, decoded when first
 * read, with this request's assignments on top), which top-level keys changed or went, and, with
 * `conflicts: 'reject'`, what each key held when first read. It knows nothing of ids or stores.
 *
 * A session loaded from a store with `getEncoded` is kept as the store handed it (`#stored`: JSON
 * text per key, never modified, `$` keys included) and nothing is copied: `#data` holds only what
 * this request decoded, assigned or removed. Most requests touch one or two keys of twenty.
 */
export class Changes {
  /** Values decoded, assigned or (as `ABSENT`) removed in this request; they hide `#stored`. */
  #data: Record<string, unknown> = emptyRecord()
  #stored: Readonly<Record<string, string>> | undefined
  #changed: Set<string> | undefined
  #removed: Set<string> | undefined
  #known: Set<string> | undefined
  /**
   * What the store held when loaded, kept through `replace()`: its fields as text, or a shallow copy
   * of a decoded record. With `#written`, it tells a change that writes nothing new from a real one.
   */
  #base: { fields: Readonly<Record<string, string>> } | { record: Readonly<Record<string, unknown>> } | undefined
  /** Keys this request wrote to the store since it loaded: their values, `undefined` when removed. */
  #written: Map<string, unknown> | undefined
  /** `ctx.session = { ... }` before loading: every stored key not in the new data must go. */
  replaced = false
  /** With `conflicts: 'reject'`: what each key held when this request first read it. */
  reads: ReadLog | undefined
  #tracker: Tracker | undefined

  constructor(logReads: boolean) {
    if (logReads) this.reads = new ReadLog()
  }

  /** Top-level keys assigned or mutated since the last write. */
  get changed(): ReadonlySet<string> {
    return this.#changed ?? NONE
  }

  /** Top-level keys removed since the last write. */
  get removed(): ReadonlySet<string> {
    return this.#removed ?? NONE
  }

  /** Keys whose value this request set, so they read before a lazy session is loaded. */
  get known(): ReadonlySet<string> {
    return this.#known ?? NONE
  }

  /** A key's value (`undefined` when absent), decoded on first access when it arrived encoded. */
  value(key: string): unknown {
    const data = this.#data
    if (Object.hasOwn(data, key)) {
      const value = data[key]
      return value === ABSENT ? undefined : value
    }
    const stored = this.#stored
    if (stored === undefined || !Object.hasOwn(stored, key) || !isDataField(key)) return undefined
    return (data[key] = decodeField(key, stored[key] as string))
  }

  /** A key's value as the user sees it: nested objects tracked. */
  read(key: string): unknown {
    const value = this.value(key)
    this.#noteRead(key, value)
    // Only objects are tracked; a tracker is made for the first one.
    return typeof value === 'object' && value !== null ? this.#track().wrap(key, value) : value
  }

  has(key: string): boolean {
    const value = this.value(key)
    this.#noteRead(key, value)
    return value !== undefined
  }

  /** The keys present: loaded ones in stored order, then new ones. */
  keys(): string[] {
    const keys = this.#keys()
    if (this.reads) for (const key of keys) this.#noteRead(key, this.value(key))
    return keys
  }

  /** The data as a plain object. */
  toJSON(): Record<string, unknown> {
    const keys = this.keys()
    const data: Record<string, unknown> = {}
    for (const key of keys) data[key] = this.value(key)
    return data
  }

  /** Every key's value, decoded, in a fresh prototype-free record (what `regenerate()` carries over). */
  all(): Record<string, unknown> {
    const data = emptyRecord()
    for (const key of this.#keys()) data[key] = this.value(key)
    return data
  }

  /** `s[key] = value`, checked; `undefined` removes the key. */
  assign(key: string, value: unknown): void {
    assertDataKey(key)
    const raw = this.unwrap(value)
    if (raw === undefined) return this.remove(key)
    assertStorable(key, raw)
    this.#data[key] = raw
    this.#markChanged(key)
    this.#markKnown(key)
  }

  remove(key: string): void {
    assertDataKey(key)
    this.#forget(key)
    this.#markRemoved(key)
    this.#markKnown(key)
  }

  /** `ctx.session = { ... }`: these keys set, every other key removed. */
  replace(value: object, loaded: boolean): void {
    const entries = Object.entries(this.unwrap(value))
    for (const [key, item] of entries) {
      assertDataKey(key)
      if (item !== undefined) assertStorable(key, item)
    }
    const data: Record<string, unknown> = emptyRecord()
    for (const [key, item] of entries) if (item !== undefined) data[key] = item
    for (const key of this.#keys()) if (!(key in data)) this.#markRemoved(key)
    for (const key in data) this.#markChanged(key)
    this.#data = data
    this.#stored = undefined
    if (!loaded) this.replaced = true
  }

  /**
   * Takes a loaded session as the data, keeping changes made before it arrived: `fields` as
   * `getEncoded` returns them, or a decoded record (bookkeeping keys already taken out).
   */
  adopt(loaded: { fields: Readonly<Record<string, string>> } | { record: Record<string, unknown> }): void {
    this.#base = 'fields' in loaded ? loaded : { record: { ...loaded.record } }
    if (this.replaced) {
      const keys = 'fields' in loaded ? Object.keys(loaded.fields).filter(isDataField) : Object.keys(loaded.record)
      for (const key of keys) if (!(key in this.#data)) this.#markRemoved(key)
      return
    }
    // What this request changed stays; anything else it knew (an explicit write) is older than the load.
    const data = 'record' in loaded ? loaded.record : emptyRecord()
    for (const key of this.changed) data[key] = this.#data[key]
    this.#data = data
    this.#stored = 'fields' in loaded ? loaded.fields : undefined
    for (const key of this.removed) this.#forget(key)
  }

  /**
   * What the changes since the last write amount to, or `undefined` when nothing changed.
   * `storeKnown`: this request knows what the store holds (it loaded the session, or the session is
   * not stored), so changes that would write nothing new are dropped: a key removed that the store
   * does not hold (`delete s.flash` on a visitor without one), a value the store holds already.
   */
  pending(storeKnown: boolean): Pending | undefined {
    if (this.changed.size === 0 && this.removed.size === 0) return undefined
    const texts = storeKnown ? this.#dropNoOps() : undefined
    if (this.changed.size === 0 && this.removed.size === 0) return undefined
    const set: Record<string, unknown> = {}
    for (const key of this.changed) set[key] = this.#data[key]
    const patch: Pending = this.removed.size > 0 ? { set, unset: [...this.removed] } : { set }
    if (texts !== undefined) patch[ENCODED] = texts
    return patch
  }

  /** After a write of these keys: nothing of them is pending, and what was written is what they hold. */
  written(patch: Pending): void {
    for (const key in patch.set) {
      this.#changed?.delete(key)
      this.#wrote(key, patch.set[key])
    }
    for (const key of patch.unset ?? []) {
      this.#removed?.delete(key)
      this.#wrote(key, undefined)
    }
  }

  /**
   * After an explicit write of `key` (or an increment in the store): this request knows its value,
   * nothing of it is pending, and it is what later writes of this request must find.
   */
  settle(key: string, value: unknown): void {
    if (value === undefined) this.#forget(key)
    else this.#data[key] = value
    this.#changed?.delete(key)
    this.#removed?.delete(key)
    this.#markKnown(key)
    this.#wrote(key, value)
  }

  /**
   * Throws unless the session, after writing `set`, stays within `maxBytes` (unloaded data is not
   * counted). A quick upper bound comes first (string lengths, three UTF-8 bytes at most per
   * UTF-16 unit, keys in both `set` and the loaded data counted twice): exact byte counts are
   * needed only near the limit. Returns the JSON text of each value in `set` (`texts`: those already
   * made), for the store.
   */
  assertSize(set: Record<string, unknown>, loaded: boolean, maxBytes: number, texts?: Record<string, string>): Record<string, string> {
    const encoded: Record<string, string> = {}
    let units = 2
    for (const key in set) units += fieldLength(key, (encoded[key] = texts !== undefined && Object.hasOwn(texts, key) ? (texts[key] as string) : encodeField(key, set[key])))
    if (loaded) {
      const stored = this.#stored
      // This package's stores hand out that sum with the fields: no walk over them.
      const storedUnits = (stored as { [FIELDS_LENGTH]?: number } | undefined)?.[FIELDS_LENGTH]
      if (storedUnits !== undefined) units += storedUnits
      else for (const key in stored) units += fieldLength(key, stored[key] as string)
      // A value decoded but unchanged is its stored text; ABSENT encodes as nothing.
      for (const key in this.#data) {
        const text = Object.hasOwn(encoded, key) ? encoded[key] : (!this.changed.has(key) && stored?.[key]) || encodeField(key, this.#data[key])
        units += fieldLength(key, text ?? '')
      }
    }
    if (units * 3 <= maxBytes) return encoded
    const bytes = this.#bytes(encoded, loaded)
    if (bytes > maxBytes) throw new SessionTooLargeError(bytes, maxBytes)
    return encoded
  }

  /** The session's exact size as JSON after writing the `encoded` values. */
  #bytes(encoded: Record<string, string>, loaded: boolean): number {
    // Braces; per key, its quotes, a colon and a comma.
    let bytes = 2
    const add = (key: string, text: string): void => void (bytes += Buffer.byteLength(key) + Buffer.byteLength(text) + 4)
    for (const key in encoded) add(key, encoded[key] as string)
    if (!loaded) return bytes
    const data = this.#data
    const stored = this.#stored
    for (const key in stored) if (isDataField(key) && !Object.hasOwn(data, key) && !Object.hasOwn(encoded, key)) add(key, stored[key] as string)
    for (const key in data) if (data[key] !== ABSENT && !Object.hasOwn(encoded, key)) add(key, encodeField(key, data[key]))
    return bytes
  }

  /** Forgets everything, what was read included: a new, empty session. */
  clear(): void {
    if (this.reads) this.reads = new ReadLog()
    this.#data = emptyRecord()
    this.#stored = undefined
    this.replaced = false
    this.#changed = this.#removed = this.#known = undefined
    this.#base = this.#written = undefined
  }

  /** The plain object behind a tracked one (no tracker yet: no tracked objects either). */
  unwrap<T>(value: T): T {
    return this.#tracker ? this.#tracker.unwrap(value) : value
  }

  #keys(): string[] {
    const data = this.#data
    const stored = this.#stored
    const keys: string[] = []
    if (stored !== undefined) {
      for (const key in stored) if (isDataField(key) && data[key] !== ABSENT) keys.push(key)
    }
    for (const key in data) if (data[key] !== ABSENT && (stored === undefined || !Object.hasOwn(stored, key))) keys.push(key)
    return keys
  }

  /**
   * With `conflicts: 'reject'`, what a key held when first read, so the write can demand it still
   * holds that. A key this request set before reading it is a blind write: what it reads is its
   * own value, which the store never held, so nothing is expected of it.
   */
  #noteRead(key: string, value: unknown): void {
    if (this.reads && !this.changed.has(key) && !this.removed.has(key)) this.reads.note(key, value)
  }

  #wrote(key: string, value: unknown): void {
    ;(this.#written ??= new Map()).set(key, value)
    this.reads?.wrote(key, value)
  }

  /**
   * Drops, from what is pending, the changes that would leave the store as it is. Returns the texts
   * made to compare the values that stay, for the write (nothing is encoded twice).
   */
  #dropNoOps(): Record<string, string> | undefined {
    for (const key of this.removed) if (!this.#storeHolds(key)) this.#removed?.delete(key)
    let texts: Record<string, string> | undefined
    for (const key of this.changed) {
      const value = this.#data[key]
      const before = this.#loadedText(key, value)
      if (before === undefined) continue
      const text = encodeField(key, value)
      if (text === before) this.#changed?.delete(key)
      else (texts ??= {})[key] = text
    }
    return texts
  }

  /** The text of `key` as loaded, when the store still holds it and it can be told apart from `value`. */
  #loadedText(key: string, value: unknown): string | undefined {
    const base = this.#base
    if (base === undefined || this.#written?.has(key)) return undefined
    if ('fields' in base) return Object.hasOwn(base.fields, key) ? base.fields[key] : undefined
    if (!Object.hasOwn(base.record, key)) return undefined
    const held = base.record[key]
    // The very object loaded may have been changed in place: no telling what the store holds.
    return held === value && typeof value === 'object' && value !== null ? undefined : encodeValue(held)
  }

  /** Whether the store holds `key`, as far as a request that knows what it holds can tell. */
  #storeHolds(key: string): boolean {
    const written = this.#written
    if (written?.has(key)) return written.get(key) !== undefined
    const base = this.#base
    if (base === undefined) return false
    return Object.hasOwn('fields' in base ? base.fields : base.record, key)
  }

  #markChanged(key: string): void {
    ;(this.#changed ??= new Set()).add(key)
    this.#removed?.delete(key)
  }

  #markRemoved(key: string): void {
    this.#changed?.delete(key)
    ;(this.#removed ??= new Set()).add(key)
  }

  #markKnown(key: string): void {
    ;(this.#known ??= new Set()).add(key)
  }

  /** Removes `key` from the data; a loaded key is hidden, since `#stored` is never modified. */
  #forget(key: string): void {
    if (this.#stored !== undefined && Object.hasOwn(this.#stored, key)) this.#data[key] = ABSENT
    else delete this.#data[key]
  }

  #track(): Tracker {
    return (this.#tracker ??= new Tracker((key) => this.#markChanged(key)))
  }
}
