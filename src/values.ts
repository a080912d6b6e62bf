/**
 * What may be stored, and how: JSON-representable checks, reserved names, prototype-safe decoding,
 * and the records stores hand out.
 */
import { SessionValueError } from './errors.js'

/**
 * Names the session object answers itself (methods and facts). Assigning data to them throws;
 * `then` is here so that `await`ing a session never mistakes it for a promise.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  'set', 'unset', 'increment', 'update', 'save', 'reload', 'touch', 'destroy', 'regenerate',
  'login', 'logout', 'maxAge', 'id', 'isNew', 'expiresAt', 'toJSON', 'then',
])

export const PROTOTYPE_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

// A record free of Object.prototype's keys. Object.create(null) gives that, but its objects start
// in V8's slow dictionary mode; instances of a constructor whose prototype has no prototype are as
// free of inherited keys and keep fast properties (a copy of a 24-key record: 3.8 µs against 0.3).
const NullRecord = function NullRecord() {} as unknown as new () => Record<string, never>
NullRecord.prototype = Object.freeze(Object.create(null))

/** A new empty record with no inherited keys (so `__proto__` is an ordinary key in it). */
export function emptyRecord<T = unknown>(): Record<string, T> {
  return new NullRecord() as Record<string, T>
}

/** Keys starting with this are the session's bookkeeping, stored beside the user's keys. */
export const META_PREFIX = '$'

/**
 * Whether a stored key holds user data: not bookkeeping, never a prototype key, and never a name
 * of the session's API (another library may have stored `id` as data; here it cannot be).
 */
export function isDataField(key: string): boolean {
  return key.charCodeAt(0) !== 36 /* $ */ && !PROTOTYPE_KEYS.has(key) && !RESERVED_NAMES.has(key)
}

/** Throws unless `key` may hold user data at the top level of a session. */
export function assertDataKey(key: string): void {
  const problem = keyProblem(key)
  if (problem !== undefined) throw new SessionValueError(key, problem)
}

/** Whether `key` may hold user data at the top level of a session. */
export function isDataKey(key: string): boolean {
  return keyProblem(key) === undefined
}

function keyProblem(key: string): string | undefined {
  if (RESERVED_NAMES.has(key)) return 'this name is reserved for the session API; choose another key'
  if (PROTOTYPE_KEYS.has(key)) return 'this key is refused: it could pollute prototypes'
  if (key.startsWith(META_PREFIX)) return `keys starting with "${META_PREFIX}" are reserved for the session's bookkeeping`
  // Stores keep keys as UTF-8 (Redis field names), where a lone surrogate becomes U+FFFD and two
  // different keys would collide.
  if (LONE_SURROGATE.test(key)) return 'the key is not well-formed Unicode (it holds a lone surrogate)'
  return undefined
}

const LONE_SURROGATE = /\p{Cs}/u

/**
 * Throws a `SessionValueError` naming `key` unless `value` survives a JSON round trip unchanged:
 * strings, finite numbers, booleans, null, plain objects, arrays, and Dates (stored as ISO strings).
 * `undefined` object properties are allowed and dropped, as JSON drops them.
 */
export function assertStorable(key: string, value: unknown): void {
  check(key, value, key, [])
}

/**
 * `assertStorable` for a value about to be written at `path` inside top-level `key`, where
 * `ancestors` will contain it: holding any of them would make the value cyclic. The array is used
 * as the walk's stack (left as it was unless this throws).
 */
export function assertStorableAt(key: string, value: unknown, path: string, ancestors: object[]): void {
  check(key, value, path, ancestors)
}

const MAX_DEPTH = 256

function check(key: string, value: unknown, path: string, ancestors: object[]): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return
    case 'number':
      if (!Number.isFinite(value)) fail(key, path, `${value} is not a finite number, which JSON cannot represent`)
      return
    case 'undefined':
      fail(key, path, 'undefined cannot be stored here (JSON has no undefined)')
      return
    case 'bigint':
    case 'symbol':
    case 'function':
      fail(key, path, `a ${typeof value} is not JSON-representable`)
      return
  }
  if (value === null) return
  const object = value as object
  if (object instanceof Date) {
    if (Number.isNaN(object.getTime())) fail(key, path, 'an invalid Date cannot be stored')
    return
  }
  if (ancestors.includes(object)) fail(key, path, 'the value is cyclic (it contains itself)')
  // Deeper than any session needs, and the walk (like JSON's own) would run out of stack.
  if (ancestors.length >= MAX_DEPTH) fail(key, path, `the value nests objects and arrays more than ${MAX_DEPTH} deep`)
  ancestors.push(object)
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) check(key, object[i], `${path}[${i}]`, ancestors)
  } else {
    const proto = Object.getPrototypeOf(object) as object | null
    if (proto !== Object.prototype && proto !== null) {
      const name = (object.constructor as { name?: string } | undefined)?.name ?? 'object'
      fail(key, path, `a ${name} is not JSON-representable; store a plain object, array or primitive`)
    }
    for (const [name, child] of Object.entries(object)) {
      if (PROTOTYPE_KEYS.has(name)) fail(key, `${path}.${name}`, 'this key is refused: it could pollute prototypes')
      if (child !== undefined) check(key, child, `${path}.${name}`, ancestors)
    }
  }
  ancestors.pop()
}

/** Throws a `SessionValueError` naming `key` and, when it lies inside the key's value, `path`. */
export function fail(key: string, path: string, problem: string): never {
  throw new SessionValueError(key, path === key ? problem : `at ${path}: ${problem}`)
}

/** The stored form of one top-level value. */
export function encodeValue(value: unknown): string {
  return JSON.stringify(value)
}

/** Why an increment of a key is refused, in every store's words. */
export const NOT_A_NUMBER_PROBLEM = 'cannot increment: it does not hold a number'
export const NOT_FINITE_PROBLEM = 'cannot increment: the sum would not be a finite number (JSON has no Infinity)'

/** `current + by` for an increment of `key`: refused unless `current` is a number (or absent) and the sum finite. */
export function incremented(key: string, current: unknown, by: number): number {
  if (current !== undefined && typeof current !== 'number') throw new SessionValueError(key, NOT_A_NUMBER_PROBLEM)
  const sum = (current ?? 0) + by
  if (!Number.isFinite(sum)) throw new SessionValueError(key, NOT_FINITE_PROBLEM)
  return sum
}

/**
 * Parses one stored value into objects that cannot pollute prototypes: keys `__proto__`,
 * `constructor` and `prototype` are dropped. The walk runs only when such a key may be present.
 */
export function decodeValue(text: string): unknown {
  const value: unknown = JSON.parse(text)
  // Only an object or an array can hold keys.
  if (typeof value !== 'object' || value === null) return value
  // A key may also be spelled with escapes ("\u005f_proto__"), so any escape sends the text down the walk too.
  if (text.includes('"__proto__"') || text.includes('"constructor"') || text.includes('"prototype"') || text.includes('\\u')) {
    stripPrototypeKeys(value)
  }
  return value
}

/**
 * `decodeValue` of what the store holds under `key`. Text that is not JSON (another program wrote
 * it) is an error that names the key and never shows the text, which may be anything.
 */
export function decodeField(key: string, text: string): unknown {
  try {
    return decodeValue(text)
  } catch {
    throw new SessionValueError(key, 'the store holds text that is not JSON under this key (written by another program?): remove that field, or the session')
  }
}

function stripPrototypeKeys(value: unknown): void {
  if (typeof value !== 'object' || value === null) return
  if (Array.isArray(value)) {
    for (const item of value) stripPrototypeKeys(item)
    return
  }
  for (const key of Object.keys(value)) {
    if (PROTOTYPE_KEYS.has(key)) delete (value as Record<string, unknown>)[key]
    else stripPrototypeKeys((value as Record<string, unknown>)[key])
  }
}

/**
 * A fresh record from stored `[key, encoded value]` pairs, as every store's `get` returns it:
 * prototype-free, each value decoded, prototype keys dropped.
 */
export function decodeRecord(fields: Iterable<readonly [string, string]>): Record<string, unknown> {
  const record = emptyRecord()
  for (const [key, text] of fields) if (!PROTOTYPE_KEYS.has(key)) record[key] = decodeField(key, text)
  return record
}
