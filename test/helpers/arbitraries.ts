/**
 * fast-check generators for the fuzz tests: what an attacker or a broken client may put where a
 * session id belongs (a Cookie header, an `x-session-id` header), and what an application may
 * assign to a session key.
 *
 * Header strings are byte strings: every character is one byte on the wire (latin1), so the
 * generators can produce invalid UTF-8 and control bytes. CR and LF are never produced (they end
 * the header line: that is request smuggling, a different test).
 */
import fc from 'fast-check'
import Keygrip from 'keygrip'

/** The id shape the SPEC promises to check before any store lookup. Kept apart from src on purpose. */
export const ID_SHAPE = /^[A-Za-z0-9_-]{22,128}$/

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** A string of base64url characters, `minLength` to `maxLength` long. */
export function base64url(minLength: number, maxLength: number): fc.Arbitrary<string> {
  return fc.string({ unit: fc.constantFrom(...BASE64URL), minLength, maxLength })
}

/** A well-shaped id that nobody issued. */
export const strayId = (): fc.Arbitrary<string> => base64url(22, 22)

/** Text as a client would send it: UTF-8 bytes, written one byte per character. */
const utf8Bytes = (text: string): string => Buffer.from(text, 'utf8').toString('latin1')

/**
 * Bytes as one character each, never CR or LF. Mostly printable or high bytes (invalid UTF-8
 * included), which reach the app; now and then control bytes, which the HTTP parser refuses (400).
 */
function rawBytes(maxLength: number): fc.Arbitrary<string> {
  const clean = fc.array(fc.oneof(fc.integer({ min: 0x20, max: 0xff }), fc.constant(0x09)), { maxLength })
  const any = fc.uint8Array({ maxLength }).map((bytes) => [...bytes].filter((byte) => byte !== 13 && byte !== 10))
  return fc.oneof({ arbitrary: clean, weight: 9 }, { arbitrary: any, weight: 1 }).map((bytes) => Buffer.from(bytes).toString('latin1'))
}

/** HTTP strips spaces and tabs around a header value; what a server then sees. */
export const stripOws = (value: string): string => value.replace(/^[ \t]+|[ \t]+$/g, '')

/** Characters that must not appear in an id, some of them lookalikes of ones that may. */
const FOREIGN = ['.', '=', '+', '/', ' ', '%', '"', ',', ';', '\t', '\\', '*', ':', '\x7f', '\xff', '\u00c0', utf8Bytes('Ａ'), utf8Bytes('а'), utf8Bytes('\u200b')]

/**
 * Strings that are not a well-formed id, even after HTTP trims the header value: garbage bytes,
 * UTF-8 text, ids one character too short or too long, ids with one foreign character, encoded
 * or quoted ids, wildcards and paths, and values large enough to pass the server's header limit.
 */
export function malformedId(): fc.Arbitrary<string> {
  return fc
    .oneof(
      { arbitrary: rawBytes(300), weight: 4 },
      { arbitrary: fc.string({ unit: 'binary', maxLength: 120 }).map(utf8Bytes), weight: 3 },
      { arbitrary: base64url(0, 21), weight: 2 },
      { arbitrary: base64url(129, 400), weight: 2 },
      {
        arbitrary: fc
          .tuple(base64url(22, 40), fc.constantFrom(...FOREIGN), fc.nat())
          .map(([id, char, at]) => id.slice(0, at % id.length) + char + id.slice(at % id.length)),
        weight: 4,
      },
      { arbitrary: strayId().map((id) => [...id].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('')), weight: 1 },
      { arbitrary: strayId().map((id) => `${id}\0`), weight: 1 },
      { arbitrary: strayId().map((id) => `'${id}'`), weight: 1 },
      { arbitrary: fc.constantFrom('*', 'koa:sess:*', '../../etc/passwd', '{"$gt":""}', '__proto__', 'constructor', 'null', 'undefined', '[object Object]'), weight: 1 },
      { arbitrary: fc.integer({ min: 4_000, max: 20_000 }).map((n) => 'A'.repeat(n)), weight: 1 },
    )
    .filter((value) => !ID_SHAPE.test(stripOws(value)))
}

/** What the fuzzer may know for cookie headers. */
export interface CookieMaterial {
  /** The cookie's name (`koa.sid`); its signature cookie is `${name}.sig`. */
  name: string
  /** Ids the fuzzer knows (a victim's, leaked without its signature). */
  ids: string[]
  /**
   * Genuine signatures, never sent as they are (nor in quotes, which RFC 6265 allows around the
   * same value): only altered (truncated, re-encoded, one character changed) or paired with another id.
   */
  signatures: string[]
  /** Signs with the app's newest key: signatures of things other than `${name}=${id}` for a known id. */
  sign(data: string): string
  /** The fuzzer's own genuine cookie, which it may send as it is (it is theirs). */
  own?: { id: string; signature: string }
}

/** Signatures that must not verify: altered genuine ones, other keys, other payloads, noise. */
function forgedSignature(material: CookieMaterial): fc.Arbitrary<string> {
  const { name, ids, signatures, sign } = material
  const genuine = new Set(ids.map((id) => sign(`${name}=${id}`)))
  const altered = fc.tuple(fc.constantFrom(...signatures), fc.nat(), fc.constantFrom(...BASE64URL)).chain(([sig, at, char]) =>
    fc.constantFrom(
      sig.slice(0, -1),
      `${sig}=`,
      `${sig}A`,
      sig.toUpperCase(),
      sig.replace(/-/g, '+').replace(/_/g, '/'),
      sig.slice(0, at % sig.length) + char + sig.slice((at % sig.length) + 1),
      ` ${sig}`,
      `"${sig}`,
    ),
  )
  return fc
    .oneof(
      altered,
      fc.tuple(fc.constantFrom(...ids), fc.string({ minLength: 1, maxLength: 20 })).map(([id, key]) => new Keygrip([key]).sign(`${name}=${id}`)),
      fc.constantFrom(...ids).chain((id) =>
        fc.constantFrom(sign(`${name}.sig=${id}`), sign(`other=${id}`), sign(id), sign(`${name}=${id} `), sign(`${name}=${id}x`)),
      ),
      base64url(27, 27),
      malformedId(),
    )
    .filter((sig) => !genuine.has(sig) && !signatures.includes(sig))
}

/** A `name=value` pair (or not quite one), for the session cookie, its signature, or neither. */
function cookiePair(material: CookieMaterial): fc.Arbitrary<string> {
  const { name } = material
  const sigName = `${name}.sig`
  const idValue = fc.oneof(fc.constantFrom(...material.ids), strayId(), malformedId(), strayId().map((id) => `"${id}"`))
  const names = fc.constantFrom(name, name, name, sigName, sigName, sigName, name.toUpperCase(), ` ${name}`, `${name} `, `${sigName}.sig`, `${name}x`, '')
  const pairs: Array<fc.Arbitrary<string>> = [
    fc.tuple(fc.constant(name), idValue).map(([n, v]) => `${n}=${v}`),
    fc.tuple(fc.constant(sigName), forgedSignature(material)).map(([n, v]) => `${n}=${v}`),
    fc.tuple(names, fc.oneof(idValue, forgedSignature(material))).map(([n, v]) => `${n}=${v}`),
    fc.tuple(fc.string({ unit: 'grapheme-ascii', maxLength: 12 }), rawBytes(40)).map(([n, v]) => `${n}=${v}`),
    fc.constantFrom(name, sigName, `${name}=`, `${sigName}=`, '=', ';', '=='),
  ]
  const own = material.own
  if (own) pairs.push(fc.constantFrom(`${name}=${own.id}`, `${sigName}=${own.signature}`))
  return fc.oneof(...pairs)
}

/**
 * One to three Cookie header values (a client may send the header more than once), made of
 * session cookies, signatures and strangers in any order, duplicated names included, joined by
 * well- and ill-formed separators; now and then a value of many kilobytes.
 */
export function cookieHeaders(material: CookieMaterial): fc.Arbitrary<string[]> {
  const separator = fc.constantFrom('; ', ';', ' ; ', ';;', ', ', ';\t')
  const header = fc
    .array(fc.tuple(cookiePair(material), separator), { minLength: 1, maxLength: 8 })
    .map((parts) => parts.map(([pair, sep], i) => (i === 0 ? pair : sep + pair)).join(''))
  return fc.array(header, { minLength: 1, maxLength: 3 })
}

// ---- session values ----

/** Names the session API keeps for itself (SPEC: methods and facts); copied here, not imported. */
export const RESERVED_KEYS = [
  'set', 'unset', 'increment', 'update', 'save', 'reload', 'touch', 'destroy', 'regenerate',
  'login', 'logout', 'maxAge', 'id', 'isNew', 'expiresAt', 'toJSON', 'then',
]
const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'prototype']

/** Top-level keys: ordinary, odd (empty, unicode, lone surrogates, Object.prototype's names) and refused ones. */
export function sessionKey(): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 24 }), weight: 6 },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 12 }), weight: 2 },
    { arbitrary: fc.constantFrom('', ' ', 'toString', 'hasOwnProperty', 'valueOf', 'length', '0', 'a.b', 'a:b', '*', '\u0000', '\ud800', 'a\udc00', '\udbff\ud800'), weight: 2 },
    // maxAge is left out: assigning it sets the session's lifetime, not data.
    { arbitrary: fc.constantFrom(...RESERVED_KEYS.filter((key) => key !== 'maxAge'), ...PROTOTYPE_KEYS, '$c', '$e', '$', '$anything'), weight: 2 },
  )
}

/** Whether the SPEC lets `key` hold data: not reserved, not a prototype key, not starting with `$`. */
export function keyAllowed(key: string): boolean {
  // A key that is not well-formed Unicode cannot be a field name in every store (Redis keeps UTF-8).
  return !RESERVED_KEYS.includes(key) && !PROTOTYPE_KEYS.includes(key) && !key.startsWith('$') && !/\p{Cs}/u.test(key)
}

class Point {
  constructor(
    readonly x = 1,
    readonly y = 2,
  ) {}
}

/** Values outside JSON, each of which must be refused. */
const UNSTORABLE: Array<() => unknown> = [
  () => NaN,
  () => Infinity,
  () => -Infinity,
  () => 10n,
  () => Symbol('s'),
  () => () => 1,
  () => new Map([['a', 1]]),
  () => new Set([1]),
  () => new Point(),
  () => new Date(Number.NaN),
  () => new Uint8Array([1, 2]),
  () => Buffer.from('x'),
  () => new String('boxed'),
  () => /regex/,
  () => new Error('e'),
  () => [1, undefined, 3],
  () => [1, , 3],
  () => JSON.parse('{"__proto__":{"polluted":true}}') as unknown,
  () => ({ nested: { constructor: 'x' } }),
  () => ({ prototype: 1 }),
  () => {
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    return cyclic
  },
  () => {
    const list: unknown[] = [1]
    list.push({ back: list })
    return list
  },
  () => ({ toJSON: () => 'custom' }),
]

/** `[[[…[]…]]]`, `depth` arrays deep. */
function deepArray(depth: number): unknown[] {
  let value: unknown[] = []
  for (let i = 1; i < depth; i++) value = [value]
  return value
}

/** JSON's corners: values that must round-trip (Dates and -0 as JSON represents them). */
const CORNERS: unknown[] = [
  -0, 0, 5e-324, 1.7976931348623157e308, Number.MAX_SAFE_INTEGER + 2, -1e-7, 0.1 + 0.2,
  '', '\u0000', '\ud800', '\udc00x\ud800', '\u2028\u2029', '</script>', '"\\', 'é'.normalize('NFD'), '🙂'.repeat(500), 'x'.repeat(100_000),
  [], {}, deepArray(20), { '': { ' ': [null] } }, new Date(0), new Date('2030-01-02T03:04:05.678Z'),
  { a: undefined, b: 1 }, Object.assign(Object.create(null) as object, { nullProto: true }), { toString: 'not a function' },
]

/**
 * Values an application might assign: arbitrary JSON, anything fast-check can build (Maps, Sets,
 * boxed values, typed arrays, sparse arrays, null-prototype objects, BigInts, Dates, -0, NaN),
 * JSON's corners, and values outside JSON.
 */
export function sessionValue(): fc.Arbitrary<unknown> {
  return fc.oneof(
    { arbitrary: fc.jsonValue({ maxDepth: 4 }), weight: 4 },
    {
      arbitrary: fc.anything({
        maxDepth: 3,
        withBigInt: true,
        withBoxedValues: true,
        withDate: true,
        withMap: true,
        withSet: true,
        withNullPrototype: true,
        withObjectString: true,
        withSparseArray: true,
        withTypedArray: true,
        withUnicodeString: true,
      }),
      weight: 4,
    },
    { arbitrary: fc.constantFrom(...CORNERS), weight: 2 },
    { arbitrary: fc.constantFrom(...UNSTORABLE).map((make) => make()), weight: 2 },
    { arbitrary: fc.constant(undefined), weight: 1 },
  )
}

/**
 * An oracle written from the SPEC, independent of src/values.ts: whether `value` may be stored,
 * i.e. is made of strings, finite numbers, booleans, null, valid Dates, arrays without holes or
 * undefined, and plain (or null-prototype) objects without the keys `__proto__`, `constructor`,
 * `prototype`, with no cycle. Object properties that are `undefined` are dropped, as JSON drops them.
 */
export function storable(value: unknown, ancestors: object[] = []): boolean {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true
  if (typeof value === 'number') return Number.isFinite(value)
  if (typeof value !== 'object') return false
  if (value instanceof Date) return !Number.isNaN(value.getTime())
  if (ancestors.includes(value)) return false
  const inner = [...ancestors, value]
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (!(i in value) || value[i] === undefined || !storable(value[i], inner)) return false
    }
    return true
  }
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return false
  for (const key of Object.keys(value)) {
    if (PROTOTYPE_KEYS.includes(key)) return false
    const child = (value as Record<string, unknown>)[key]
    if (child !== undefined && !storable(child, inner)) return false
  }
  return true
}

/** What a stored value reads back as: its JSON form (Dates become ISO strings, -0 becomes 0). */
export const asJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value)) as unknown
