/**
 * The filters and update documents MongoStore sends, as pure functions of their inputs (and of
 * `now`, so tests can pin the clock). index.ts only runs them; test/stores/mongodb.test.ts checks
 * them document by document.
 *
 * Stored form of one session (store key `id`):
 *
 *     { _id: id, data: { <escaped key>: <stored value>, … }, expiresAt: Date }
 *
 * - A stored value is the key's JSON encoding (`encodeValue`, the same text every other store
 *   keeps) as a BSON string, except a finite number, which is kept as a BSON number. Numbers stay
 *   native so that `increment` is MongoDB's own atomic `$inc`, and `$inc` refuses, atomically and
 *   without changing anything, a field that holds a string: every non-number value. Everything
 *   else stays JSON text so that the conditional write compares exactly what the other stores
 *   compare (the JSON encoding, key order in nested objects included), and so that keys nested
 *   inside values (`{ "a.b": 1 }`, `{ "$x": 1 }`, `"\u0000"`) never become BSON field names.
 *   Two numbers are equal in MongoDB exactly when they are equal as JavaScript numbers, so
 *   comparing a BSON number is comparing its JSON text (the one exception, integers past 2^53,
 *   which JSON cannot hold exactly either, can only make a conditional write report a conflict).
 * - Top-level keys become field names under `data` through `escapeKey`, because MongoDB reads a
 *   `.` in a path as nesting and a leading `$` as an operator, and the session's own bookkeeping
 *   keys (`$c`, `$e`, …) start with `$`.
 */
import type { Document, Filter, UpdateFilter } from 'mongodb'
import { PRESENT, storedText, type EncodedPatch, type Patch } from '../../store.js'
import { decodeRecord, encodeValue } from '../../values.js'

/** One session as MongoStore stores it (see the module comment). */
export interface MongoSessionDocument {
  /** The store key: the middleware's prefix followed by the session id. */
  _id: string
  /** The session's top-level keys (escaped) and their stored values. */
  data?: Record<string, string | number>
  /** When the session ends; the TTL index removes the document within about a minute after it. */
  expiresAt: Date
}

// ---- field names ----

// Percent-escaped: `%` itself (so the scheme can be undone), `.` (path separator), `$` (operator
// prefix; escaped anywhere in the name, not only in front, so the rule is one rule), NUL (BSON
// field names are C strings) and lone UTF-16 surrogates (they have no UTF-8 form, so the driver
// would store U+FFFD in their place).
const ESCAPED = /[%.$\u0000]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g
const UNESCAPED = /%(?:u([0-9A-F]{4})|([0-9A-F]{2}))/g
// MongoDB refuses an empty field name; a lone `%` can stand for it because `%` is always escaped.
const EMPTY = '%'

/**
 * The field name under `data` for a top-level session key: `%` → `%25`, `.` → `%2E`, `$` → `%24`,
 * NUL → `%00`, a lone surrogate → `%uD800`; the empty key → `%`. Every other character is kept,
 * so ordinary keys read the same in the database. Injective, undone by `unescapeKey`.
 */
export function escapeKey(key: string): string {
  if (key === '') return EMPTY
  return key.replace(ESCAPED, (char) => {
    const code = char.charCodeAt(0)
    return code > 0xff ? `%u${code.toString(16).toUpperCase()}` : `%${code.toString(16).toUpperCase().padStart(2, '0')}`
  })
}

/** The session key that `escapeKey` turned into `name`. */
export function unescapeKey(name: string): string {
  if (name === EMPTY) return ''
  return name.replace(UNESCAPED, (_, unit: string | undefined, byte: string | undefined) =>
    String.fromCharCode(parseInt(unit ?? (byte as string), 16)),
  )
}

/** The path of a session key in the document. */
export const fieldOf = (key: string): string => `data.${escapeKey(key)}`

// ---- values ----

/** What MongoStore stores for one top-level value (see the module comment). */
export function storedValue(value: unknown): string | number {
  if (typeof value === 'number' && Number.isFinite(value)) return value
  return encodeValue(value)
}

/**
 * The session record in a document `get` read, or `undefined` for none. Numbers are turned back
 * into their JSON text so that `decodeRecord` handles every value one way (prototype-free record,
 * prototype keys dropped). A field of another BSON type was not written by MongoStore.
 */
export function recordOf(document: Document | null | undefined): Record<string, unknown> | undefined {
  if (!document) return undefined
  const data: unknown = document.data
  const fields: Array<[string, string]> = []
  if (typeof data === 'object' && data !== null) {
    for (const [name, stored] of Object.entries(data as Record<string, unknown>)) {
      fields.push([unescapeKey(name), textOf(name, stored)])
    }
  }
  return decodeRecord(fields)
}

function textOf(name: string, stored: unknown): string {
  if (typeof stored === 'string') return stored
  if (typeof stored === 'number') return JSON.stringify(stored)
  throw new TypeError(
    `MongoStore found data.${name} holding a ${stored === null ? 'null' : typeof stored}, which it never writes ` +
      '(values are JSON strings or numbers); was the document written by something else?',
  )
}

// ---- filters ----

/** Milliseconds since the epoch to a Date, rounded up so that a session never ends early. */
export const expiryOf = (now: number, ttlMs: number): Date => new Date(Math.ceil(now + ttlMs))

/**
 * The session `id` if it is still live at `now`. Every read and write carries this condition:
 * MongoDB's TTL monitor removes expired documents only about once a minute, and until then an
 * expired document must count as no session at all.
 */
export function liveFilter(id: string, now: number): Filter<MongoSessionDocument> {
  return { _id: id, expiresAt: { $gt: new Date(now) } }
}

/**
 * The session `id` if it is expired at `now` (or has no valid `expiresAt`): removing it is always
 * safe, and is how a write makes room for a fresh session under the same id.
 */
export function expiredFilter(id: string, now: number): Filter<MongoSessionDocument> {
  return { _id: id, expiresAt: { $not: { $gt: new Date(now) } } }
}

/**
 * `liveFilter` plus each expected key: holding exactly the stored form of the expected value, or,
 * for `undefined`, absent, or for `PRESENT`, any value. A missing or expired session therefore matches only expectations of
 * absence, and then only through an upsert.
 */
export function expectFilter(id: string, expect: Record<string, unknown>, now: number): Filter<MongoSessionDocument> {
  const filter: Filter<MongoSessionDocument> = liveFilter(id, now)
  for (const [key, value] of Object.entries(expect)) {
    // $eq, not a bare value, so that a stored string that looks like an operator document is never one.
    filter[fieldOf(key)] = value === undefined ? { $exists: false } : value === PRESENT ? { $exists: true } : { $eq: storedValue(value) }
  }
  return filter
}

/** Whether every expectation is "absent", the only kind a missing or expired session meets. */
export const expectsOnlyAbsence = (expect: Record<string, unknown>): boolean =>
  Object.values(expect).every((value) => value === undefined)

// ---- updates ----

/**
 * The update of `apply` (and of `applyIf`): `$set` of each changed key and the new `expiresAt`,
 * `$unset` of each removed key. A key both set and unset is unset, as the other stores do (they
 * write the sets first), and MongoDB would refuse the two operators on one path. A `set` entry
 * whose value is `undefined` has no JSON encoding and is removed too.
 */
export function patchUpdate(patch: EncodedPatch, now: number): UpdateFilter<MongoSessionDocument> {
  const unset = new Set(patch.unset ?? [])
  const $set: Record<string, string | number | Date> = {}
  if (patch.set) {
    for (const [key, value] of Object.entries(patch.set)) {
      if (value === undefined) unset.add(key)
      // A number is stored as a number, any other value as its text (made already, when it was).
      else if (!unset.has(key)) $set[fieldOf(key)] = typeof value === 'number' ? storedValue(value) : storedText(patch, key)
    }
  }
  $set.expiresAt = expiryOf(now, patch.ttlMs)
  const update: UpdateFilter<MongoSessionDocument> = { $set }
  if (unset.size > 0) {
    const $unset: Record<string, ''> = {}
    for (const key of unset) $unset[fieldOf(key)] = ''
    update.$unset = $unset
  }
  return update
}

/** Whether `patch` writes at least one key, and so may create the session. */
export const createsSession = (patch: Patch): boolean =>
  patch.set !== undefined && Object.entries(patch.set).some(([key, value]) => value !== undefined && !patch.unset?.includes(key))

/** The update of `increment`: MongoDB's `$inc` (absent counts as 0) and the new expiry. */
export function incrementUpdate(key: string, by: number, ttlMs: number, now: number): UpdateFilter<MongoSessionDocument> {
  return { $inc: { [fieldOf(key)]: by }, $set: { expiresAt: expiryOf(now, ttlMs) } }
}

/** The update of `touch`: the new expiry only. */
export function touchUpdate(ttlMs: number, now: number): UpdateFilter<MongoSessionDocument> {
  return { $set: { expiresAt: expiryOf(now, ttlMs) } }
}

/** The projection that returns one key of the session (for `increment`'s reply). */
export const projectionOf = (key: string): Document => ({ [fieldOf(key)]: 1 })

/** The stored number `increment` read back from the document it updated. */
export function sumOf(document: Document | null, key: string): number {
  const data: unknown = document?.data
  const sum = typeof data === 'object' && data !== null ? (data as Record<string, unknown>)[escapeKey(key)] : undefined
  if (typeof sum !== 'number') throw new Error(`MongoDB answered the increment of "${key}" with ${String(sum)}, not a number`)
  return sum
}
