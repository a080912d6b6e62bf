/**
 * Store-outage policy and the per-user index where it needs a particular store: a store that can
 * be switched off, a store without a conditional write, and two servers sharing one Redis.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { fromWholeObjectStore, MemoryStore, session, type Store } from '../../src/index.js'
import { RedisStore } from '../../src/stores/redis/index.js'
import { Client, koaApp, listen } from '../helpers/http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { closeHarnesses, harness } from './behaviour.js'

after(closeHarnesses)

/** A MemoryStore behind a switch: while `down`, every operation fails as a lost connection does. */
function switchableStore(): Store & { down: boolean } {
  const inner = new MemoryStore()
  const gate = <A extends unknown[], R>(run: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      if (store.down) throw new Error('connect ECONNREFUSED 127.0.0.1:6379')
      return run(...args)
    }
  const store = {
    down: false,
    get: gate((id: string) => inner.get(id)),
    // As MemoryStore does, it answers this one at once; so it fails at once too.
    getEncoded(id: string) {
      if (store.down) throw new Error('connect ECONNREFUSED 127.0.0.1:6379')
      return inner.getEncoded(id)
    },
    apply: gate((id: string, patch: Parameters<Store['apply']>[1]) => inner.apply(id, patch)),
    applyIf: gate((id: string, patch: Parameters<NonNullable<Store['applyIf']>>[1]) => inner.applyIf(id, patch)),
    increment: gate((id: string, key: string, by: number, ttl: number) => inner.increment(id, key, by, ttl)),
    touch: gate((id: string, ttl: number) => inner.touch(id, ttl)),
    destroy: gate((id: string) => inner.destroy(id)),
  }
  return store
}

describe("onStoreError: 'anonymous'", () => {
  it('serves an empty, read-only session while the store is down, and answers 503 to any write', async () => {
    const store = switchableStore()
    const { client, errors } = await harness(store, { onStoreError: 'anonymous' }, {
      '/login': (ctx) => void (ctx.session.user = 'ann'),
      '/page': (ctx) => ({ user: ctx.session.user ?? null, isNew: ctx.session.isNew }),
      '/write': (ctx) => void (ctx.session.visits = 1),
      '/inc': (ctx) => ctx.session.increment('n'),
      '/null': (ctx) => void (ctx.session = null),
      '/destroy': (ctx) => ctx.session.destroy(),
      '/logout': (ctx) => ctx.session.logout(),
      '/regenerate': (ctx) => ctx.session.regenerate(),
    })
    await client.get('/login')
    store.down = true
    assert.deepEqual((await client.get('/page')).json, { user: null, isNew: true })
    const write = await client.get('/write')
    assert.equal(write.status, 503)
    assert.deepEqual(write.setCookies, [])
    // Destroying is a write too: answered as done while the session lives on, a logout would lie.
    for (const path of ['/inc', '/null', '/destroy', '/logout', '/regenerate']) {
      const reply = await client.get(path)
      assert.deepEqual([reply.status, reply.setCookies], [503, []], path)
      assert.match(errors.at(-1)?.message ?? '', /read-only/, path)
    }
    store.down = false
    assert.deepEqual((await client.get('/page')).json, { user: 'ann', isNew: false })
  })

  it("'fail' (the default) answers 503 at once, and tells session:error listeners", async () => {
    const store = switchableStore()
    const { client, running } = await harness(store, {}, { '/login': (ctx) => void (ctx.session.user = 'ann'), '/page': () => 'ok' })
    const reported: string[] = []
    running.app.on('session:error', ({ error }: { error: Error }) => reported.push(error.message))
    await client.get('/login')
    store.down = true
    assert.equal((await client.get('/page')).status, 503)
    assert.equal(reported.length, 1)
    assert.match(reported[0] ?? '', /during get: connect ECONNREFUSED/)
  })

  it('refuses an unknown policy', () => {
    assert.throws(() => session({ onStoreError: 'ignore' as 'fail' }), /option onStoreError must be 'fail' or 'anonymous'/)
  })
})

describe('per-user index', () => {
  it('login() is refused on a store without a conditional write, and user ids are checked', async () => {
    const whole = fromWholeObjectStore({ get: async () => undefined, set: async () => {}, destroy: async () => {} })
    const { client, errors } = await harness(whole, {}, { '/login': (ctx) => ctx.session.login('ann') })
    assert.equal((await client.get('/login')).status, 500)
    assert.match(errors[0]?.message ?? '', /login\(\) needs a store with a conditional write/)
    assert.throws(() => session().listByUser(''), /user ids must be non-empty strings/)
  })

  describe('two servers sharing one Redis', () => {
    let redis: RedisServer
    const stores: RedisStore[] = []
    before(async () => {
      redis = await startRedis()
    })
    after(async () => {
      for (const store of stores) await store.close()
      await redis.close()
    })

    it('destroyByUser ends 50 sessions of one user opened through both servers, except the current one', async () => {
      const servers = await Promise.all(
        [0, 1].map(async () => {
          const store = new RedisStore({ url: redis.url })
          stores.push(store)
          const app = koaApp()
          const sessions = session({ store })
          app.use(sessions)
          app.use(async (ctx) => {
            if (ctx.path === '/login') await ctx.session.login('ann')
            ctx.body = { id: ctx.sessionId ?? null }
          })
          return { running: await listen(app), sessions }
        }),
      )
      const clients = Array.from({ length: 50 }, (_, i) => new Client(servers[i % 2]!.running.url))
      await Promise.all(clients.map((client) => client.get('/login')))
      const current = clients[7]!.jar.get('koa.sid') as string
      assert.equal((await servers[1]!.sessions.listByUser('ann')).length, 50)
      assert.equal((await servers[0]!.sessions.destroyByUser('ann', { except: current })).length, 49)
      const ids = await Promise.all(clients.map(async (client, i) => ((await client.get('/')).json as { id: string | null }).id ?? `gone ${i}`))
      assert.deepEqual(ids.filter((id) => !id.startsWith('gone')), [current])
      assert.deepEqual((await servers[1]!.sessions.listByUser('ann')).map((s) => s.id), [current])
      for (const server of servers) await server.running.close()
    })
  })
})
