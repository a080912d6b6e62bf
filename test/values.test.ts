import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SessionValueError } from '../src/errors.js'
import { assertDataKey, assertStorable, decodeRecord, decodeValue } from '../src/values.js'

describe('assertStorable', () => {
  it('accepts what JSON represents exactly, and Dates', () => {
    for (const value of ['s', 0, -1.5, true, false, null, [], {}, [1, [2, { a: null }]], { a: { b: 'c' } }, new Date(0)]) {
      assert.doesNotThrow(() => assertStorable('k', value))
    }
    assert.doesNotThrow(() => assertStorable('k', Object.create(null)))
  })

  it('refuses what JSON cannot carry, with a TypeError naming the key and where', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    let deep: unknown = 1
    for (let i = 0; i < 5000; i++) deep = [deep]
    const cases: Array<[unknown, RegExp]> = [
      [deep, /"cart": at cart(\[0\]){256}: the value nests objects and arrays more than 256 deep/],
      [() => 1, /"cart": a function is not JSON-representable/],
      [Symbol('s'), /a symbol/],
      [10n, /a bigint/],
      [Number.NaN, /NaN is not a finite number/],
      [Infinity, /Infinity is not a finite number/],
      [cyclic, /at cart\.self: the value is cyclic/],
      [new Map(), /a Map is not JSON-representable/],
      [{ list: [1, undefined] }, /at cart\.list\[1\]: undefined cannot be stored/],
      [new Date('nope'), /an invalid Date/],
      [JSON.parse('{"__proto__": {}}'), /at cart\.__proto__: this key is refused/],
      [{ constructor: 1 }, /at cart\.constructor: this key is refused/],
    ]
    for (const [value, message] of cases) {
      assert.throws(
        () => assertStorable('cart', value),
        (error: unknown) => error instanceof SessionValueError && error instanceof TypeError && message.test(error.message),
      )
    }
  })

  it('allows undefined object properties, which JSON drops', () => {
    assert.doesNotThrow(() => assertStorable('k', { a: undefined }))
  })

  it('accepts a value that appears twice without being cyclic', () => {
    const shared = { a: 1 }
    assert.doesNotThrow(() => assertStorable('k', [shared, shared]))
  })
})

describe('assertDataKey', () => {
  it('refuses the session API names, prototype keys and bookkeeping keys', () => {
    for (const key of ['save', 'regenerate', 'id', 'maxAge', 'toJSON', 'then', 'update', 'login']) {
      assert.throws(() => assertDataKey(key), /reserved for the session API/)
    }
    for (const key of ['__proto__', 'constructor', 'prototype']) assert.throws(() => assertDataKey(key), /pollute prototypes/)
    assert.throws(() => assertDataKey('$e'), /reserved for the session's bookkeeping/)
    assert.doesNotThrow(() => assertDataKey('user'))
  })
})

describe('decodeValue / decodeRecord', () => {
  it('drops prototype keys at any depth', () => {
    const value = decodeValue('{"a":[{"__proto__":{"x":1},"b":2}],"constructor":{"prototype":1}}') as Record<string, unknown>
    assert.deepEqual(value, { a: [{ b: 2 }] })
    assert.equal(({} as Record<string, unknown>).x, undefined)
  })

  it('drops prototype keys spelled with escapes too', () => {
    const value = decodeValue('{"\\u005f_proto__":{"polluted":true},"ok":1}') as Record<string, unknown>
    assert.deepEqual(Object.keys(value), ['ok'])
    assert.equal(Object.assign({}, value).polluted, undefined)
  })

  it('builds a prototype-free record without prototype keys', () => {
    const record = decodeRecord([['a', '1'], ['__proto__', '{"polluted":true}']])
    assert.equal('toString' in record, false, 'no Object.prototype in its chain')
    assert.equal(Object.getPrototypeOf(Object.getPrototypeOf(record)), null)
    assert.deepEqual(Object.keys(record), ['a'])
  })
})
