import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Changes, type Pending } from '../src/changes.js'
import { SessionTooLargeError, SessionValueError } from '../src/errors.js'
import { FIELDS_LENGTH } from '../src/store.js'

/** Fields as a store's getEncoded hands them out: JSON text per key, bookkeeping included. */
function stored(): Readonly<Record<string, string>> {
  return Object.freeze({ $c: '1700000000000', user: '"u1"', cart: '{"items":[1,2]}', counter: '3', $e: '1800000000000' })
}

/** A pending patch without the texts it carries for the store. */
const plain = (patch: Pending | undefined) => patch && { set: patch.set, ...(patch.unset ? { unset: patch.unset } : {}) }

function loaded(fields = stored()): Changes {
  const changes = new Changes(false)
  changes.adopt({ fields })
  return changes
}

describe('Changes over encoded fields', () => {
  it('reads loaded keys, decoded on first access, and never shows bookkeeping or prototype keys', () => {
    const changes = loaded({ ...stored(), ['__proto__' as string]: '{"polluted":true}', constructor: '1' })
    assert.equal(changes.read('counter'), 3)
    assert.deepEqual(changes.read('cart'), { items: [1, 2] })
    assert.equal(changes.read('$c'), undefined)
    assert.equal(changes.has('$e'), false)
    assert.equal(changes.read('constructor'), undefined)
    assert.equal(changes.read('toString'), undefined)
    assert.deepEqual(changes.keys(), ['user', 'cart', 'counter'])
  })

  it('never modifies the object the store handed out', () => {
    const fields = stored()
    const changes = loaded(fields)
    changes.assign('user', 'u2')
    changes.remove('cart')
    changes.assign('extra', 1)
    assert.deepEqual(fields, stored())
  })

  it('hides a removed loaded key everywhere, and shows it again when assigned anew', () => {
    const changes = loaded()
    changes.remove('cart')
    assert.equal(changes.read('cart'), undefined)
    assert.equal(changes.has('cart'), false)
    assert.deepEqual(changes.keys(), ['user', 'counter'])
    assert.deepEqual(changes.toJSON(), { user: 'u1', counter: 3 })
    assert.deepEqual(plain(changes.pending(true)), { set: {}, unset: ['cart'] })
    changes.assign('cart', { items: [] })
    assert.deepEqual(changes.toJSON(), { user: 'u1', cart: { items: [] }, counter: 3 })
    assert.deepEqual(plain(changes.pending(true)), { set: { cart: { items: [] } } })
  })

  it('keeps stored order for loaded keys and puts new keys after them', () => {
    const changes = loaded()
    changes.assign('zeta', 1)
    changes.assign('counter', 4)
    assert.deepEqual(changes.keys(), ['user', 'cart', 'counter', 'zeta'])
  })

  it('tracks changes made inside a loaded object', () => {
    const changes = loaded()
    ;(changes.read('cart') as { items: number[] }).items.push(3)
    assert.deepEqual(plain(changes.pending(true)), { set: { cart: { items: [1, 2, 3] } } })
  })

  it('keeps changes made before the load (lazy sessions), removals included', () => {
    const changes = new Changes(false)
    changes.assign('counter', 10)
    changes.remove('user')
    changes.adopt({ fields: stored() })
    assert.deepEqual(changes.toJSON(), { cart: { items: [1, 2] }, counter: 10 })
    assert.deepEqual(plain(changes.pending(true)), { set: { counter: 10 }, unset: ['user'] })
  })

  it('replaces everything with ctx.session = { ... }: loaded keys not in the new data are removed', () => {
    const changes = loaded()
    changes.replace({ user: 'u9' }, true)
    assert.deepEqual(changes.toJSON(), { user: 'u9' })
    assert.deepEqual(plain(changes.pending(true)), { set: { user: 'u9' }, unset: ['cart', 'counter'] })
  })

  it('drops a key assigned earlier in the request when ctx.session = { ... } leaves it out', () => {
    const changes = loaded()
    changes.assign('extra', 1)
    changes.assign('counter', 4)
    changes.replace({ user: 'u9' }, true)
    assert.deepEqual(changes.toJSON(), { user: 'u9' })
    // The store never held extra: removing it is nothing to write.
    assert.deepEqual(plain(changes.pending(true)), { set: { user: 'u9' }, unset: ['cart', 'counter'] })
  })

  it('has nothing pending when nothing changed, and nothing pending again once written', () => {
    const changes = loaded()
    assert.equal(plain(changes.pending(true)), undefined)
    changes.assign('counter', 4)
    changes.remove('cart')
    const patch = plain(changes.pending(true))
    assert.deepEqual(patch, { set: { counter: 4 }, unset: ['cart'] })
    changes.written(patch as NonNullable<typeof patch>)
    assert.equal(plain(changes.pending(true)), undefined)
    assert.equal(changes.read('counter'), 4)
  })

  it('drops changes that would leave the store as it is: a removal of a key it lacks, a value it holds', () => {
    const changes = loaded()
    changes.remove('flash')
    changes.assign('counter', 3)
    ;(changes.read('cart') as { items: number[] }).items.push(9)
    ;(changes.read('cart') as { items: number[] }).items.pop()
    changes.assign('extra', 1)
    changes.remove('extra')
    assert.equal(plain(changes.pending(true)), undefined)
    changes.replace({ user: 'u1', cart: { items: [1, 2] }, counter: 3 }, true)
    assert.equal(plain(changes.pending(true)), undefined)
  })

  it('writes a removal or a value the store may not hold: unloaded, or written in this request', () => {
    const blind = new Changes(false)
    blind.remove('flash')
    assert.deepEqual(plain(blind.pending(false)), { set: {}, unset: ['flash'] })
    const changes = loaded()
    changes.assign('extra', 1)
    changes.written({ set: { extra: 1 } })
    changes.remove('extra')
    changes.assign('counter', 4)
    changes.written({ set: { counter: 4 } })
    changes.assign('counter', 3)
    assert.deepEqual(plain(changes.pending(true)), { set: { counter: 3 }, unset: ['extra'] })
  })

  it('has nothing to write for a new session whose changes cancel out', () => {
    const changes = new Changes(false)
    changes.assign('a', 1)
    changes.remove('a')
    changes.remove('flash')
    assert.equal(plain(changes.pending(true)), undefined)
    changes.assign('b', 2)
    changes.replace({}, true)
    assert.equal(plain(changes.pending(true)), undefined)
  })

  it('tells no-op changes of a decoded record too, for stores without encoded fields', () => {
    const changes = new Changes(false)
    changes.adopt({ record: { user: 'u1', n: 1, cart: { items: [1] }, prefs: { a: 1 } } })
    changes.remove('user')
    changes.remove('flash')
    changes.assign('n', 1)
    changes.assign('prefs', { a: 1 })
    // Changed in place and back: the store's copy cannot be told from the loaded object, so it is written.
    ;(changes.read('cart') as { items: number[] }).items.push(2)
    ;(changes.read('cart') as { items: number[] }).items.pop()
    assert.deepEqual(plain(changes.pending(true)), { set: { cart: { items: [1] } }, unset: ['user'] })
  })

  it('carries every value over, decoded, for regenerate()', () => {
    const changes = loaded()
    changes.assign('extra', true)
    assert.deepEqual({ ...changes.all() }, { user: 'u1', cart: { items: [1, 2] }, counter: 3, extra: true })
  })

  it('takes the loaded size from the FIELDS_LENGTH a store hands out, as a bound only: the verdict stays exact', () => {
    const fields = stored()
    const length = Object.entries(fields).reduce((sum, [key, text]) => sum + key.length + text.length + 4, 0)
    const exact = loaded(Object.freeze({ ...fields, [FIELDS_LENGTH]: length }))
    assert.doesNotThrow(() => exact.assertSize({ big: 'xxxx' }, true, 62))
    assert.throws(() => exact.assertSize({ big: 'xxxxx' }, true, 62), SessionTooLargeError)
    // A length far too large only sends the check down the exact count, which walks the fields.
    const overstated = loaded(Object.freeze({ ...fields, [FIELDS_LENGTH]: 1e9 }))
    assert.doesNotThrow(() => overstated.assertSize({ big: 'xxxx' }, true, 62))
  })

  it('refuses, naming the key, a value made cyclic behind the tracker (through a reference kept from before it was assigned)', () => {
    const changes = new Changes(false)
    const value: Record<string, unknown> = { inner: {} }
    changes.assign('kept', value)
    ;(value.inner as Record<string, unknown>).back = value
    const set = changes.pending(true)?.set ?? {}
    assert.throws(() => changes.assertSize(set, false, 1_000), (error: unknown) => error instanceof SessionValueError && /Session key "kept": the value cannot be encoded as JSON \(Converting circular structure/.test(error.message))
  })

  it('counts the loaded data in the size check, and only the loaded data', () => {
    const changes = loaded()
    // {"user":"u1","cart":{"items":[1,2]},"counter":3,"big":"xxxx"} is 61 bytes; the count takes a
    // comma after every key, so 62.
    assert.doesNotThrow(() => changes.assertSize({ big: 'xxxx' }, true, 62))
    assert.throws(() => changes.assertSize({ big: 'xxxxx' }, true, 62), SessionTooLargeError)
    // Unloaded, only the keys written count.
    assert.doesNotThrow(() => changes.assertSize({ big: 'xxxxx' }, false, 20))
    // Multi-byte characters are counted as UTF-8 bytes.
    assert.throws(() => changes.assertSize({ big: 'ééé' }, false, 16), /Session would be 17 bytes/)
  })
})
