import { ReadLog } from './conflicts.js'
import { SessionTooLargeError } from './errors.js'
import type { Patch } from './store.js'
import { Tracker } from './tracking.js'
import { assertDataKey, assertStorable, decodeValue, emptyRecord, Encoded, encodeValue } from './values.js'

/**
 * What one request's session holds and what it changed: the data (loaded values, decoded when first
 * read, with this request's assignments on top), which top-level keys changed or went, and, with
 * `conflicts: 'reject'`, what each key held when first read. It knows nothing of ids or stores.
 */
export class Changes {
  data: Record<string, unknown> = emptyRecord()
  /** Top-level keys assigned or mutated since the last write; `removed`: deleted since then. */
  readonly changed = new Set<string>()
  readonly removed = new Set<string>()
  /** Keys whose value this request set, so they read before a lazy session is loaded. */
  readonly known = new Set<string>()
  /** `ctx.session = { ... }` before loading: every stored key not in the new data must go. */
  replaced = false
  /** With `conflicts: 'reject'`: what each key held when this request first read it. */
  reads: ReadLog | undefined
  #tracker: Tracker | undefined

  constructor(logReads: boolean) {
    if (logReads) this.reads = new ReadLog()
  }

  /** A key's value, decoded on first access when it arrived encoded. */
  value(key: string): unknown {
    const value = this.data[key]
    if (!(value instanceof Encoded)) return value
    const decoded = decodeValue(value.text)
    this.data[key] = decoded
    return decoded
  }

  /** A key's value as the user sees it: nested objects tracked. */
  read(key: string): unknown {
    const value = Object.hasOwn(this.data, key) ? this.value(key) : undefined
    this.reads?.note(key, value)
    return value === undefined ? undefined : this.#track().wrap(key, value)
  }

  has(key: string): boolean {
    const present = Object.hasOwn(this.data, key)
    this.reads?.note(key, present ? this.value(key) : undefined)
    return present
  }

  keys(): string[] {
    this.reads?.noteAll(this.data)
    return Object.keys(this.data)
  }

  /** The data as a plain object. */
  toJSON(): Record<string, unknown> {
    this.reads?.noteAll(this.data)
    const data: Record<string, unknown> = {}
    for (const key in this.data) data[key] = this.value(key)
    return data
  }

  /** `s[key] = value`, checked; `undefined` removes the key. */
  assign(key: string, value: unknown): void {
    assertDataKey(key)
    const raw = this.unwrap(value)
    if (raw === undefined) return this.remove(key)
    assertStorable(key, raw)
    this.data[key] = raw
    this.changed.add(key)
    this.removed.delete(key)
    this.known.add(key)
  }

  remove(key: string): void {
    assertDataKey(key)
    delete this.data[key]
    this.changed.delete(key)
    this.removed.add(key)
    this.known.add(key)
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
    for (const key in this.data) if (!(key in data)) this.removed.add(key)
    for (const key in data) {
      this.changed.add(key)
      this.removed.delete(key)
    }
    this.data = data
    if (!loaded) this.replaced = true
  }

  /** Takes a loaded record (bookkeeping removed) as the data, keeping changes made before it arrived. */
  adopt(record: Record<string, unknown>): void {
    if (this.replaced) {
      for (const key in record) if (!(key in this.data)) this.removed.add(key)
      return
    }
    for (const key of this.changed) record[key] = this.data[key]
    for (const key of this.removed) delete record[key]
    this.data = record
  }

  /** What the changes since the last write amount to, or `undefined` when nothing changed. */
  pending(): Omit<Patch, 'ttlMs'> | undefined {
    if (this.changed.size === 0 && this.removed.size === 0) return undefined
    const set: Record<string, unknown> = {}
    for (const key of this.changed) set[key] = this.value(key)
    return this.removed.size > 0 ? { set, unset: [...this.removed] } : { set }
  }

  /** After a write of these keys: nothing of them is pending, and what was written is what they hold. */
  written(patch: Omit<Patch, 'ttlMs'>): void {
    for (const key of Object.keys(patch.set ?? {})) {
      this.changed.delete(key)
      this.reads?.wrote(key, patch.set?.[key])
    }
    for (const key of patch.unset ?? []) {
      this.removed.delete(key)
      this.reads?.wrote(key, undefined)
    }
  }

  /** After an explicit write of `key`: this request knows its value, and nothing of it is pending. */
  settle(key: string, value: unknown): void {
    if (value === undefined) delete this.data[key]
    else this.data[key] = value
    this.changed.delete(key)
    this.removed.delete(key)
    this.known.add(key)
  }

  /** Throws unless the session, after writing `set`, stays within `maxBytes` (unloaded data is not counted). */
  assertSize(set: Record<string, unknown>, loaded: boolean, maxBytes: number): void {
    let bytes = 2
    const add = (key: string, text: string) => (bytes += Buffer.byteLength(key) + Buffer.byteLength(text) + 4)
    for (const key in set) add(key, encodeValue(set[key]))
    if (loaded) {
      for (const key in this.data) {
        const value = this.data[key]
        if (!(key in set)) add(key, value instanceof Encoded ? value.text : encodeValue(value))
      }
    }
    if (bytes > maxBytes) throw new SessionTooLargeError(bytes, maxBytes)
  }

  /** Forgets everything: a new, empty session. */
  clear(): void {
    this.data = emptyRecord()
    this.replaced = false
    this.changed.clear()
    this.removed.clear()
    this.known.clear()
  }

  /** The plain object behind a tracked one. */
  unwrap<T>(value: T): T {
    return this.#track().unwrap(value)
  }

  #track(): Tracker {
    return (this.#tracker ??= new Tracker((key) => {
      this.changed.add(key)
      this.removed.delete(key)
    }))
  }
}
