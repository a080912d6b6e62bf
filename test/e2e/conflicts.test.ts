/** update() and conflicts: 'reject' where a store is made to lose every race, or cannot take part. */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { fromWholeObjectStore, MemoryStore, session, SessionConflictError } from '../../src/index.js'
import { closeHarnesses, harness } from './behaviour.js'

after(closeHarnesses)

/** A MemoryStore where another writer changes `key` right after every read, so every CAS loses. */
function contendedStore(key: string): MemoryStore {
  const store = new MemoryStore()
  const get = store.get.bind(store)
  store.get = async (id) => {
    const record = await get(id)
    await store.apply(id, { set: { [key]: Math.random() }, ttlMs: 60_000 })
    return record
  }
  return store
}

describe('update()', () => {
  it('throws SessionConflictError after its retries, having written nothing of its own', async () => {
    let caught: unknown
    const { client } = await harness(contendedStore('n'), {}, {
      '/start': (ctx) => void (ctx.session.n = 1),
      '/update': async (ctx) => {
        try {
          await ctx.session.update('n', () => 'mine', { retries: 3 })
        } catch (error) {
          caught = error
          return { n: ctx.session.n }
        }
      },
    })
    await client.get('/start')
    assert.equal((await client.get('/update')).status, 200)
    assert.ok(caught instanceof SessionConflictError)
    assert.equal(caught.key, 'n')
    assert.match(caught.message, /lost 4 compare-and-set attempts/)
  })

  it('removes the key when fn returns undefined, and refuses an async fn', async () => {
    const { client } = await harness(new MemoryStore(), {}, {
      '/start': (ctx) => void (ctx.session = { a: 1, b: 2 }),
      '/drop': async (ctx) => ({ result: (await ctx.session.update('a', () => undefined)) ?? null, data: ctx.session.toJSON() }),
      '/async': async (ctx) => ctx.session.update('b', async () => 3),
    })
    await client.get('/start')
    assert.deepEqual((await client.get('/drop')).json, { result: null, data: { b: 2 } })
    assert.equal((await client.get('/async')).status, 500)
  })

  it('is refused on a store without a conditional write, saying why', async () => {
    const whole = fromWholeObjectStore({ get: async () => undefined, set: async () => {}, destroy: async () => {} })
    const { client, errors } = await harness(whole, {}, { '/update': (ctx) => ctx.session.update('n', () => 1) })
    assert.equal((await client.get('/update')).status, 500)
    assert.match(errors[0]?.message ?? '', /update\(\) needs a store with a conditional write/)
    assert.throws(() => session({ store: whole, conflicts: 'reject' }), /conflicts: 'reject' needs a store with a conditional write/)
  })
})
