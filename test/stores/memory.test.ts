import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { MemoryStore } from '../../src/stores/memory.js'
import { ENCODED, FIELDS_LENGTH, type EncodedPatch } from '../../src/store.js'
import { storeContract } from '../contract/store-contract.js'

storeContract('MemoryStore', async () => ({ store: new MemoryStore() }))

describe('MemoryStore', () => {
  it('keeps at most maxSessions, evicting the least recently used first', async () => {
    const store = new MemoryStore({ maxSessions: 3 })
    for (const id of ['a', 'b', 'c']) await store.apply(id, { set: { id }, ttlMs: 60_000 })
    await store.get('a') // a is now the most recently used
    await store.apply('d', { set: { id: 'd' }, ttlMs: 60_000 })
    assert.equal(store.size, 3)
    assert.equal(await store.get('b'), undefined)
    for (const id of ['a', 'c', 'd']) assert.equal((await store.get(id))?.id, id)
  })

  it('keeps the recency order through destroys, expiries and rewrites', async () => {
    const store = new MemoryStore({ maxSessions: 3 })
    for (const id of ['a', 'b', 'c']) await store.apply(id, { set: { id }, ttlMs: 60_000 })
    await store.destroy('b')
    await store.apply('d', { set: { id: 'd' }, ttlMs: 20 }) // order, oldest first: a c d
    await store.get('a') // c d a
    await sleep(40) // d expires
    await store.apply('d', { set: { again: true }, ttlMs: 60_000 }) // a new d, without the old keys: c a d
    await store.apply('e', { set: { id: 'e' }, ttlMs: 60_000 }) // c is evicted: a d e
    assert.equal(store.size, 3)
    assert.equal(await store.get('c'), undefined)
    assert.deepEqual({ ...(await store.get('d')) }, { again: true })
    for (const id of ['a', 'e']) assert.equal((await store.get(id))?.id, id)
  })

  it('drops expired sessions as it goes, without a timer', async () => {
    const store = new MemoryStore()
    for (let i = 0; i < 64; i++) await store.apply(`old${i}`, { set: { i }, ttlMs: 20 })
    await sleep(40)
    for (let i = 0; i < 64; i++) await store.apply(`new${i}`, { set: { i }, ttlMs: 60_000 })
    assert.ok(store.size < 128, `expected expired sessions to be swept, size is ${store.size}`)
  })

  it('keeps the exact length of each session\'s fields (FIELDS_LENGTH) through sets, rewrites and removals', async () => {
    const store = new MemoryStore()
    const lengthOf = (fields: Readonly<Record<string, string>>): number =>
      Object.entries(fields).reduce((sum, [key, text]) => sum + key.length + text.length + 4, 0)
    const check = (): void => {
      const fields = store.getEncoded('s') as Readonly<Record<string, string>> & { [FIELDS_LENGTH]: number }
      assert.equal(fields[FIELDS_LENGTH], lengthOf(fields))
    }
    await store.apply('s', { set: { a: 1, b: 'two', c: { d: [3] } }, ttlMs: 60_000 })
    check()
    await store.apply('s', { set: { b: 'a longer two', e: 'é' }, unset: ['a', 'missing'], ttlMs: 60_000 })
    check()
    await store.increment('s', 'n', 5, 60_000)
    check()
    assert.equal(await store.applyIf('s', { set: { c: null }, unset: ['e'], expect: { b: 'a longer two' }, ttlMs: 60_000 }), true)
    check()
    await store.apply('s', { set: { ['__proto__' as string]: 1 }, ttlMs: 60_000 })
    check()
  })

  it('stores the text the middleware made for a value (ENCODED), and encodes the values it did not make', async () => {
    const store = new MemoryStore()
    const texts = { a: '{"made":"once"}' }
    await store.apply('s', { set: { a: { made: 'twice' }, valueOf: 2, $e: 3 }, ttlMs: 60_000, [ENCODED]: texts } as EncodedPatch)
    assert.deepEqual(Object.entries(store.getEncoded('s') ?? {}), [['a', '{"made":"once"}'], ['valueOf', '2'], ['$e', '3']])
  })

  it('refuses a maxSessions that is not a positive integer', () => {
    assert.throws(() => new MemoryStore({ maxSessions: 0 }), /maxSessions must be a positive integer/)
  })

  it('keeps no timer that would hold the process open', async () => {
    const store = new MemoryStore()
    await store.apply('x', { set: { a: 1 }, ttlMs: 60_000 })
    const timers = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout')
    assert.equal(timers.length, 0)
  })
})
