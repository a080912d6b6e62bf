import type { Patch, Store } from '../store.js'
import { decodeRecord, decodeValue, encodeValue, incremented } from '../values.js'

/**
 * A koa-session style store, which keeps each session as one whole object: koa-redis,
 * koa-generic-session stores, or any object with these three methods.
 */
export interface WholeObjectStore {
  get(key: string, maxAge?: unknown, options?: unknown): unknown
  set(key: string, session: Record<string, unknown>, maxAge?: number, options?: unknown): unknown
  destroy(key: string, options?: unknown): unknown
}

// koa-session keeps its own bookkeeping inside the stored object under these names.
const KOA_SESSION_EXPIRE = '_expire'
const KOA_SESSION_MAX_AGE = '_maxAge'
const KOA_SESSION_BROWSER = '_session'

/**
 * Wraps a whole-object store so it serves the atomic Store contract. Its writes are
 * read-modify-write: two requests writing the same session at once can still lose one change,
 * which is what such stores can offer. It has no conditional write, so `update()` and
 * `conflicts: 'reject'` refuse it.
 *
 * It reads sessions that koa-session wrote: `_expire` and `_maxAge` become the session's expiry
 * and maxAge, never user data; the first write stores them in this library's own shape.
 */
export function fromWholeObjectStore(store: WholeObjectStore): Store {
  for (const method of ['get', 'set', 'destroy'] as const) {
    if (typeof store?.[method] !== 'function') {
      throw new TypeError(`fromWholeObjectStore(store): store.${method} must be a function (koa-session's store shape)`)
    }
  }

  /** The stored object as a record; koa-session's bookkeeping becomes ours (`$e`, `$m`) on the way. */
  async function read(id: string): Promise<Record<string, unknown> | undefined> {
    const whole: unknown = await store.get(id, undefined, { rolling: false })
    if (typeof whole !== 'object' || whole === null) return undefined
    // A copy through JSON: the wrapped store may hand out (and keep) the very object it stores.
    const record = decodeRecord(Object.entries(whole).map(([key, value]) => [key, encodeValue(value)] as const))
    const expire = record[KOA_SESSION_EXPIRE]
    const maxAge = record[KOA_SESSION_MAX_AGE]
    if (typeof expire === 'number') {
      if (expire <= Date.now()) return undefined
      record.$e = expire
    }
    // Our writes remove koa-session's fields, so when present koa-session wrote last: they win.
    if (record[KOA_SESSION_BROWSER] === true) record.$m = 'session'
    else if (typeof maxAge === 'number') record.$m = maxAge
    delete record[KOA_SESSION_EXPIRE]
    delete record[KOA_SESSION_MAX_AGE]
    delete record[KOA_SESSION_BROWSER]
    return record
  }

  async function write(id: string, record: Record<string, unknown>, ttlMs: number): Promise<void> {
    await store.set(id, decodeValue(encodeValue(record)) as Record<string, unknown>, ttlMs, { rolling: false, changed: true })
  }

  return {
    get: read,

    async apply(id, patch: Patch) {
      const record = (await read(id)) ?? Object.create(null)
      if (patch.set) Object.assign(record, patch.set)
      if (patch.unset) for (const key of patch.unset) delete record[key]
      await write(id, record, patch.ttlMs)
    },

    async increment(id, key, by, ttlMs) {
      const record = (await read(id)) ?? Object.create(null)
      const sum = incremented(key, record[key], by)
      record[key] = sum
      await write(id, record, ttlMs)
      return sum
    },

    async touch(id, ttlMs) {
      const record = await read(id)
      if (record) await write(id, record, ttlMs)
    },

    async destroy(id) {
      await store.destroy(id, {})
    },
  }
}
