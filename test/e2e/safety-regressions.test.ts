/**
 * Bugs the reliability and security tests found, each pinned by the behaviour the SPEC asks for
 * (all failed before their fixes). The fifth, MemoryStore writes slowing down at its bound, is a
 * matter of speed and is measured outside the tests.
 *
 * B1  RedisStore merges top-level keys that are not well-formed UTF-16 (lone surrogates become U+FFFD).
 * B2  RedisStore on ioredis: a Redis error reply puts the session id and session data in the
 *     error's cause (command.args, previousErrors), so in app 'error' events, session:error payloads and logs.
 * B3  `delete ctx.session['$c']` (any bookkeeping key) is not refused, and lifts absoluteMaxAge.
 * B4  lazy: increment() / update() on a session past absoluteMaxAge keep it alive, and update() reads its data.
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { inspect } from 'node:util'
import { after, describe, it } from 'node:test'
import type { Context } from 'koa'
import { createClient } from 'redis'
import { MemoryStore, session, type Store } from '../../src/index.js'
import { RedisStore } from '../../src/stores/redis/index.js'
import { Client, koaApp, listen, type Reply, type Running } from '../helpers/http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { closeHarnesses, harness } from './behaviour.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  await closeHarnesses()
})

async function redis(): Promise<RedisServer> {
  const server = await startRedis()
  cleanups.push(() => server.close())
  return server
}

async function serve(store: Store, routes: Record<string, (ctx: Context) => unknown>, options = {}): Promise<{ running: Running; errors: Error[]; events: Error[] }> {
  const app = koaApp()
  const errors: Error[] = []
  const events: Error[] = []
  app.on('error', (error: Error) => errors.push(error))
  app.on('session:error', ({ error }: { error: Error }) => events.push(error))
  app.use(session({ ...options, store }))
  app.use(async (ctx) => {
    const route = routes[ctx.path]
    if (route) ctx.body = (await route(ctx)) ?? 'ok'
  })
  const running = await listen(app)
  cleanups.push(() => running.close())
  return { running, errors, events }
}

/**
 * A client that keeps sending the cookies of `reply` until it is given others, whatever their
 * expiry (sent to the second, so a sub-second one may lapse on arrival).
 */
function keeping(client: Client, reply: Reply): { id: string; keep(): void } {
  const kept = reply.setCookies.map((line) => /^([^=]+)=([^;]*)/.exec(line)?.slice(1, 3) as [string, string])
  const id = kept.find(([name]) => name === 'koa.sid')?.[1]
  assert.ok(id, 'no session cookie to keep')
  return {
    id,
    keep() {
      if (!client.jar.has('koa.sid')) for (const [name, value] of kept) client.jar.set(name, value)
    },
  }
}

describe('B1: RedisStore and keys that are not well-formed UTF-16', () => {
  for (const kind of ['ioredis', 'node-redis'] as const) {
    it(`${kind}: '\\ud800' and '\\udc00' are refused at assignment or kept apart, never merged into one field`, async () => {
      const server = await redis()
      let store: RedisStore
      if (kind === 'node-redis') {
        const client = await createClient({ url: server.url }).on('error', () => undefined).connect()
        cleanups.push(async () => client.destroy())
        store = new RedisStore({ client })
      } else {
        store = new RedisStore({ url: server.url })
        cleanups.push(() => store.close())
      }
      let refused: unknown
      const { running } = await serve(store, {
        '/put': (ctx) => {
          ctx.session.marker = 1
          try {
            ctx.session['\ud800'] = 'first'
            ctx.session['\udc00'] = 'second'
          } catch (error) {
            refused = error
          }
        },
        '/get': (ctx) => ctx.session.toJSON(),
      })
      const client = new Client(running.url)
      await client.get('/put')
      const read = (await client.get('/get')).json
      if (refused === undefined) assert.deepEqual(read, { marker: 1, '\ud800': 'first', '\udc00': 'second' })
      else assert.ok(refused instanceof TypeError && (refused as TypeError & { key?: string }).key === '\ud800')
    })
  }
})

describe('B2: RedisStore on ioredis, Redis error replies', () => {
  it('a READONLY reply (an old master after a failover) keeps the session id and data out of the error and its causes', async () => {
    const server = await redis()
    const master = await redis()
    const store = new RedisStore({ url: server.url, timeoutMs: 1_000 })
    cleanups.push(() => store.close())
    const SECRET = 'CARD-4111-1111-1111-1111'
    const { running, errors, events } = await serve(store, {
      '/seed': (ctx) => void (ctx.session.card = SECRET),
      '/write': (ctx) => void (ctx.session.more = `${SECRET}-more`),
      '/count': async (ctx) => ({ n: await ctx.session.increment('n') }),
    })
    const client = new Client(running.url)
    await client.get('/seed')
    const id = client.jar.get('koa.sid') as string
    await server.cli('replicaof', '127.0.0.1', String(master.port))
    assert.equal((await client.get('/write')).status, 503)
    assert.equal((await client.get('/count')).status, 503)
    assert.equal(errors.length, 2)
    for (const error of [...errors, ...events]) {
      const text = inspect(error, { depth: Infinity }) // what console.error(error) or a logger prints
      assert.ok(!text.includes(SECRET), `session data in the error: ${text}`)
      assert.ok(!text.includes(id), `the session id in the error: ${text}`)
    }
  })
})

describe('B3: bookkeeping keys and delete', () => {
  it("delete ctx.session['$c'] is refused like an assignment, and cannot lift absoluteMaxAge", async () => {
    const { client } = await harness(new MemoryStore(), { absoluteMaxAge: 500 }, {
      '/seed': (ctx) => void (ctx.session.a = 1),
      '/forget': (ctx) => {
        try {
          delete ctx.session[String(ctx.query.key)]
          return { refused: false }
        } catch (error) {
          return { refused: error instanceof TypeError }
        }
      },
      '/write': (ctx) => void (ctx.session.w = Date.now()),
      '/read': (ctx) => ({ a: ctx.session.a ?? null }),
    })
    const { keep } = keeping(client, await client.get('/seed'))
    keep()
    const forget = (await client.get('/forget?key=$c')).json as { refused: boolean }
    // Kept busy past absoluteMaxAge: without its creation time the session never ends.
    const started = Date.now()
    while (Date.now() - started < 900) {
      keep()
      await client.get('/write')
      await sleep(50)
    }
    keep()
    const late = (await client.get('/read')).json
    assert.deepEqual({ forget, late }, { forget: { refused: true }, late: { a: null } })
  })
})

describe('B4: lazy sessions and absoluteMaxAge', () => {
  it('increment() and update() on a session past absoluteMaxAge neither extend it nor read its data', async () => {
    const store = new MemoryStore()
    const { client } = await harness(store, { lazy: true, absoluteMaxAge: 500 }, {
      '/seed': async (ctx) => ctx.session.set('secret', 'from before'),
      '/count': async (ctx) => ({ n: await ctx.session.increment('n') }),
      '/peek': async (ctx) => ({ secret: (await ctx.session.update('secret', (value: unknown) => value)) ?? null }),
    })
    const { id: first, keep } = keeping(client, await client.get('/seed'))
    const started = Date.now()
    let n = 0
    while (Date.now() - started < 900) {
      keep()
      n = ((await client.get('/count')).json as { n: number }).n
      await sleep(40)
    }
    keep()
    const peek = (await client.get('/peek')).json
    const stored = await store.get(`koa:sess:${first}`)
    // Past 500 ms the session has ended: what a request sees or writes is a new session's.
    assert.deepEqual({ peek, storedSecret: stored?.secret ?? null }, { peek: { secret: null }, storedSecret: null }, `after ${n} increments`)
  })
})
