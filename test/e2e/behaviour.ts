/**
 * Whole-request behaviour of the middleware, as one suite any store runs:
 * `sessionBehaviour('MemoryStore', open)`. Every test goes through a real Koa server on a
 * loopback port with a cookie-keeping client.
 */
import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import { after, before, describe, it } from 'node:test'
import type Koa from 'koa'
import type { Context } from 'koa'
import { session, type SessionMiddleware, type SessionOptions } from '../../src/index.js'
import type { Store } from '../../src/store.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import { recording, type Recording } from '../helpers/recording-store.js'

export interface BehaviourStore {
  store: Store
  close?: () => Promise<void>
}

type Route = (ctx: Context) => unknown
export interface Harness {
  client: Client
  rec: Recording
  running: Running
  errors: Error[]
  /** The middleware, for its per-user index operations. */
  sessions: SessionMiddleware
}

const servers: Running[] = []

/** Starts an app with `session(options)` and the given routes; each route's return value is the JSON body. */
export async function startHarness(store: Store, options: SessionOptions, routes: Record<string, Route>, App?: typeof Koa): Promise<Harness> {
  const rec = recording(store)
  const app = koaApp(App)
  const errors: Error[] = []
  app.on('error', (error: Error) => errors.push(error))
  const sessions = session({ ...options, store: rec.store })
  app.use(sessions)
  app.use(async (ctx) => {
    const route = routes[ctx.path]
    if (!route) return
    const body = await route(ctx)
    if (body !== undefined) ctx.body = body
    else if (ctx.body === undefined) ctx.status = 204
  })
  const running = await listen(app)
  servers.push(running)
  return { client: new Client(running.url), rec, running, errors, sessions }
}

/** Stops every server `harness()` started. */
export async function closeHarnesses(): Promise<void> {
  for (const running of servers.splice(0)) await running.close()
}

/** Starts an app on Koa 3 (see `startHarness`). */
export const harness = (store: Store, options: SessionOptions, routes: Record<string, Route>): Promise<Harness> =>
  startHarness(store, options, routes)

/**
 * Cookie expiry is sent to the second, so a client may drop a cookie of a second or less early.
 * Tests of sub-second lifetimes keep the cookies of `reply` and put them back before a request.
 */
function keepCookies(reply: { setCookies: string[] }): (client: Client) => void {
  const kept = reply.setCookies.map((line) => /^([^=]+)=([^;]*)/.exec(line)?.slice(1, 3) as [string, string])
  return (client) => {
    for (const [name, value] of kept) client.jar.set(name, value)
  }
}

const dataOf = (ctx: Context) => ctx.session.toJSON()

/** `App`: the Koa class to run on (default Koa 3; the Koa 2 run passes Koa 2's). */
export function sessionBehaviour(name: string, open: () => Promise<BehaviourStore>, App?: typeof Koa): void {
  const harness = (store: Store, options: SessionOptions, routes: Record<string, Route>) => startHarness(store, options, routes, App)
  describe(`Session behaviour on ${name}`, () => {
    let store: Store
    let close: (() => Promise<void>) | undefined
    before(async () => {
      ;({ store, close } = await open())
    })
    after(async () => {
      await closeHarnesses()
      await close?.()
    })

    it('sets no cookie and touches no store when the session is not used', async () => {
      const { client, rec } = await harness(store, {}, { '/': () => 'hello' })
      const reply = await client.get('/')
      assert.equal(reply.body, 'hello')
      assert.deepEqual(reply.setCookies, [])
      assert.deepEqual(rec.calls, [])
    })

    it('stores a new session and sends a signed, httpOnly, lax cookie of 30 days', async () => {
      const { client, rec } = await harness(store, {}, { '/login': (ctx) => void (ctx.session.user = 'ann') })
      const reply = await client.get('/login')
      assert.equal(reply.setCookies.length, 2)
      const [cookie = '', sig = ''] = reply.setCookies
      assert.match(cookie, /^koa\.sid=[A-Za-z0-9_-]{22}; path=\/; expires=[^;]+; samesite=lax; httponly$/)
      assert.match(sig, /^koa\.sid\.sig=/)
      const expires = new Date(/expires=([^;]+)/.exec(cookie)?.[1] ?? '').getTime()
      assert.ok(Math.abs(expires - (Date.now() + 30 * 86_400_000)) < 5_000)
      assert.deepEqual(rec.calls, ['apply'])
      const id = client.jar.get('koa.sid') as string
      assert.equal((await store.get(`koa:sess:${id}`))?.user, 'ann')
    })

    it('reads with one store call, writes nothing and sends no cookie when nothing changed', async () => {
      const { client, rec } = await harness(store, {}, {
        '/login': (ctx) => void (ctx.session.user = 'ann'),
        '/me': (ctx) => ({ user: ctx.session.user, isNew: ctx.session.isNew }),
      })
      await client.get('/login')
      rec.reset()
      const reply = await client.get('/me')
      assert.deepEqual(reply.json, { user: 'ann', isNew: false })
      assert.deepEqual(rec.calls, ['get'])
      assert.deepEqual(reply.setCookies, [])
    })

    it('writes nothing and sends no cookie for changes that leave the session as it was (the flash pattern)', async () => {
      const { client, rec } = await harness(store, {}, {
        '/login': (ctx) => void (ctx.session.user = 'ann'),
        '/flash': (ctx) => {
          const flash: unknown = ctx.session.flash
          delete ctx.session.flash
          return { flash: flash ?? null }
        },
        '/cancel': (ctx) => {
          ctx.session.tmp = { a: 1 }
          delete ctx.session.tmp
        },
        '/new-then-empty': (ctx) => {
          ctx.session.a = 1
          ctx.session = {}
        },
        '/same': (ctx) => {
          ctx.session.user = 'ann'
          ctx.session = { user: 'ann' }
        },
        '/me': dataOf,
      })
      for (const path of ['/flash', '/cancel', '/new-then-empty']) {
        rec.reset()
        const reply = await client.get(path)
        assert.ok(reply.status < 300, `a visitor, ${path}: ${reply.status}`)
        assert.deepEqual([reply.setCookies, rec.calls], [[], []], `a visitor, ${path}`)
      }
      await client.get('/login')
      for (const path of ['/flash', '/cancel', '/same']) {
        rec.reset()
        const reply = await client.get(path)
        assert.deepEqual([reply.setCookies, rec.calls], [[], ['get']], `a session, ${path}`)
      }
      assert.deepEqual((await client.get('/me')).json, { user: 'ann' })
    })

    it('encodes each changed value once per write: the store takes the text made for the size check', async () => {
      // A Date that counts its JSON encodings (a Date is storable; it is stored as its ISO string).
      let encodings = 0
      class CountedDate extends Date {
        override toJSON(): string {
          encodings++
          return super.toJSON()
        }
      }
      const { client } = await harness(store, {}, {
        '/save': (ctx) => void (ctx.session.at = { when: new CountedDate(0) }),
        '/at': (ctx) => ctx.session.at,
      })
      await client.get('/save')
      assert.equal(encodings, 1)
      assert.deepEqual((await client.get('/at')).json, { when: '1970-01-01T00:00:00.000Z' })
    })

    it('writes only the keys that changed, nested changes included, and unsets deleted keys', async () => {
      const { client, rec } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session = { a: 1, b: { list: [1] }, c: 'keep', d: 'drop' }),
        '/change': (ctx) => {
          ctx.session.b.list.push(2)
          delete ctx.session.d
        },
        '/all': dataOf,
      })
      await client.get('/seed')
      rec.reset()
      await client.get('/change')
      const patch = rec.patches[0]
      assert.deepEqual(Object.keys(patch?.set ?? {}).filter((k) => !k.startsWith('$')), ['b'])
      assert.deepEqual(patch?.unset, ['d'])
      assert.deepEqual((await client.get('/all')).json, { a: 1, b: { list: [1, 2] }, c: 'keep' })
    })

    it('keeps both changes when two requests change different keys at once (100 rounds, 0 lost)', async () => {
      const { client } = await harness(store, {}, {
        '/start': (ctx) => void (ctx.session.started = true),
        '/left': async (ctx) => {
          await new Promise((resolve) => setImmediate(resolve))
          ctx.session.left = Number(ctx.query.round)
        },
        '/right': (ctx) => void (ctx.session.right = Number(ctx.query.round)),
        '/all': dataOf,
      })
      await client.get('/start')
      let lost = 0
      for (let round = 0; round < 100; round++) {
        await Promise.all([client.get(`/left?round=${round}`), client.get(`/right?round=${round}`)])
        const data = (await client.get('/all')).json as { left: number; right: number }
        if (data.left !== round || data.right !== round) lost++
      }
      assert.equal(lost, 0)
    })

    it('adds up concurrent atomic increments', async () => {
      const { client } = await harness(store, {}, {
        '/start': (ctx) => void (ctx.session.n = 0),
        '/inc': (ctx) => ctx.session.increment('n'),
        '/all': dataOf,
      })
      await client.get('/start')
      await Promise.all(Array.from({ length: 50 }, () => client.get('/inc')))
      assert.deepEqual((await client.get('/all')).json, { n: 50 })
    })

    it('set and unset write at once without loading the session (lazy); increment loads it first', async () => {
      const { client, rec } = await harness(store, { lazy: true }, {
        '/seed': async (ctx) => {
          await ctx.session.set('a', 1)
          await ctx.session.set('b', 2)
        },
        '/blind': async (ctx) => {
          await ctx.session.unset('a')
          return { n: await ctx.session.increment('n', 5) }
        },
        '/all': async (ctx) => (await ctx.loadSession()).toJSON(),
      })
      await client.get('/seed')
      rec.reset()
      assert.deepEqual((await client.get('/blind')).json, { n: 5 })
      // One conditional write: the session must not be one whose bookkeeping the write must honour
      // (bound to a user, retired, its own maxAge). The counter moves the expiry, so it loads first.
      assert.deepEqual(rec.calls, ['applyIf', 'get', 'increment'])
      assert.deepEqual((await client.get('/all')).json, { b: 2, n: 5 })
    })

    it('increment() refuses a key that holds no number in this request, loaded or not (lazy, after ctx.session = {...})', async () => {
      const { client } = await harness(store, { lazy: true }, {
        '/seed': async (ctx) => void (await ctx.session.set('n', 1)),
        '/replace': async (ctx) => {
          ctx.session = { n: 'text' }
          return ctx.session.increment('n').then(
            () => 'incremented',
            (error: Error) => error.name,
          )
        },
        '/all': async (ctx) => (await ctx.loadSession()).toJSON(),
      })
      await client.get('/seed')
      assert.equal((await client.get('/replace')).body, 'SessionValueError')
      assert.deepEqual((await client.get('/all')).json, { n: 'text' })
    })

    it('lazy: a maxAge set before loadSession() is kept through the load', async () => {
      const { client } = await harness(store, { lazy: true, maxAge: '1h' }, {
        '/seed': (ctx) => void (ctx.session.n = 1),
        '/set-then-load': async (ctx) => {
          ctx.session.maxAge = '2h'
          return { maxAge: (await ctx.loadSession()).maxAge }
        },
        '/peek': async (ctx) => ({ maxAge: (await ctx.loadSession()).maxAge }),
      })
      await client.get('/seed')
      assert.deepEqual((await client.get('/set-then-load')).json, { maxAge: 7_200_000 })
      assert.deepEqual((await client.get('/peek')).json, { maxAge: 7_200_000 })
    })

    it("lazy: a write made without loading keeps the session's own maxAge", async () => {
      const { client } = await harness(store, { lazy: true, maxAge: '1h' }, {
        '/seed': (ctx) => {
          ctx.session.maxAge = '5h'
          ctx.session.n = 1
        },
        '/assign': (ctx) => void (ctx.session.n = 2),
        '/peek': async (ctx) => ({ maxAge: (await ctx.loadSession()).maxAge, n: ctx.session.n }),
      })
      await client.get('/seed')
      const reply = await client.get('/assign')
      const expires = Date.parse(/expires=([^;]+)/.exec(reply.setCookies[0] ?? '')?.[1] ?? '')
      assert.ok(Math.abs(expires - (Date.now() + 5 * 3_600_000)) < 5000, `cookie expires ${new Date(expires).toISOString()}`)
      assert.deepEqual((await client.get('/peek')).json, { maxAge: 5 * 3_600_000, n: 2 })
    })

    it('lazy: reads nothing until loadSession(), and says so when data is read too early', async () => {
      const { client, rec, errors } = await harness(store, { lazy: true }, {
        '/seed': (ctx) => void (ctx.session.user = 'ann'),
        '/untouched': () => 'ok',
        '/early': (ctx) => ctx.session.user,
        '/load': async (ctx) => ({ user: (await ctx.loadSession()).user, again: (await ctx.loadSession()).user }),
      })
      await client.get('/seed')
      rec.reset()
      assert.equal((await client.get('/untouched')).body, 'ok')
      assert.deepEqual(rec.calls, [])
      assert.equal((await client.get('/early')).status, 500)
      assert.match(errors.at(-1)?.message ?? '', /await ctx\.loadSession\(\)/)
      rec.reset()
      assert.deepEqual((await client.get('/load')).json, { user: 'ann', again: 'ann' })
      assert.deepEqual(rec.calls, ['get'])
    })

    it('ctx.session = null destroys the session, clears the cookie, and reads null afterwards', async () => {
      const { client, rec } = await harness(store, {}, {
        '/login': (ctx) => void (ctx.session.user = 'ann'),
        '/logout': (ctx) => {
          ctx.session = null
          return { after: ctx.session, id: ctx.sessionId ?? null }
        },
      })
      await client.get('/login')
      const id = client.jar.get('koa.sid') as string
      rec.reset()
      const reply = await client.get('/logout')
      assert.deepEqual(reply.json, { after: null, id: null })
      assert.deepEqual(rec.calls, ['get', 'destroy'])
      assert.match(reply.setCookies[0] ?? '', /^koa\.sid=; path=\/; expires=Thu, 01 Jan 1970/)
      assert.equal(client.jar.has('koa.sid'), false)
      assert.equal(await store.get(`koa:sess:${id}`), undefined)
    })

    it('ctx.session = {...} replaces the data; after null it starts a new session with a new id', async () => {
      const { client } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session = { a: 1, b: 2 }),
        '/replace': (ctx) => {
          // A key assigned earlier in the same request goes with the rest.
          ctx.session.a = 10
          ctx.session.e = 5
          ctx.session = { c: 3 }
        },
        '/restart': (ctx) => {
          ctx.session = null
          ctx.session = { fresh: true }
        },
        '/all': (ctx) => ({ data: dataOf(ctx), id: ctx.sessionId }),
      })
      await client.get('/seed')
      assert.equal((await client.get('/replace')).status, 204)
      const before = (await client.get('/all')).json as { data: unknown; id: string }
      assert.deepEqual(before.data, { c: 3 })
      await client.get('/restart')
      const afterRestart = (await client.get('/all')).json as { data: unknown; id: string }
      assert.deepEqual(afterRestart.data, { fresh: true })
      assert.notEqual(afterRestart.id, before.id)
      assert.equal(await store.get(`koa:sess:${before.id}`), undefined)
    })

    it('ctx.session = anything but null or a plain object is a TypeError that says what it got, and changes nothing', async () => {
      class Profile {
        user = 'ann'
      }
      const values: Record<string, () => unknown> = {
        text: () => 'ann',
        number: () => 5,
        array: () => [1],
        map: () => new Map([['user', 'ann']]),
        date: () => new Date(0),
        instance: () => new Profile(),
      }
      const { client } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session.user = 'bob'),
        '/set': (ctx) => {
          try {
            ctx.session = values[ctx.query.v as string]?.() as Record<string, unknown>
            return 'accepted'
          } catch (error) {
            return `${(error as Error).name}: ${(error as Error).message}`
          }
        },
        '/all': dataOf,
      })
      await client.get('/seed')
      const got: Record<string, string> = {}
      for (const v of Object.keys(values)) got[v] = (await client.get(`/set?v=${v}`)).body
      assert.deepEqual(got, {
        text: 'TypeError: ctx.session can only be set to null (to destroy it) or to a plain object (to replace its data), not a string',
        number: 'TypeError: ctx.session can only be set to null (to destroy it) or to a plain object (to replace its data), not a number',
        array: 'TypeError: ctx.session can only be set to null (to destroy it) or to a plain object (to replace its data), not an array',
        map: 'TypeError: ctx.session can only be set to null (to destroy it) or to a plain object (to replace its data), not a Map',
        date: 'TypeError: ctx.session can only be set to null (to destroy it) or to a plain object (to replace its data), not a Date',
        instance: 'TypeError: ctx.session can only be set to null (to destroy it) or to a plain object (to replace its data), not a Profile',
      })
      assert.deepEqual((await client.get('/all')).json, { user: 'bob' })
    })

    it('ctx.session = { maxAge, ... } sets the lifetime, as in koa-session, and the rest as data', async () => {
      const { client } = await harness(store, { maxAge: '1h' }, {
        '/set': (ctx) => void (ctx.session = { maxAge: '2h', user: 'ann' }),
        '/all': (ctx) => ({ data: dataOf(ctx), maxAge: ctx.session.maxAge }),
      })
      const set = await client.get('/set')
      const expires = Date.parse(/expires=([^;]+)/.exec(set.setCookies[0] ?? '')?.[1] ?? '')
      assert.ok(Math.abs(expires - (Date.now() + 7_200_000)) < 5000, `cookie expires ${new Date(expires).toISOString()}`)
      assert.deepEqual((await client.get('/all')).json, { data: { user: 'ann' }, maxAge: 7_200_000 })
    })

    it('console.log(ctx.session) shows the data as koa-session does, never the id; ctx.session = ctx.session changes nothing', async () => {
      const { client, rec } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session.user = { name: 'ann' }),
        '/log': (ctx) => {
          const custom = (ctx.session as unknown as Record<symbol, () => unknown>)[inspect.custom]
          ctx.session = ctx.session
          return { id: ctx.sessionId, printed: inspect(ctx.session), custom: custom?.call(ctx.session) }
        },
      })
      await client.get('/seed')
      rec.reset()
      const reply = await client.get('/log')
      const { id, printed, custom } = reply.json as { id: string; printed: string; custom: unknown }
      assert.equal(printed, "{ user: { name: 'ann' } }")
      assert.equal(custom, printed)
      assert.ok(!printed.includes(id))
      assert.deepEqual([rec.calls, reply.setCookies], [['get'], []])
    })

    it('regenerate() gives a new id, destroys the old one and keeps the data; keep: false starts empty', async () => {
      const { client } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session.cart = ['x']),
        '/login': async (ctx) => {
          await ctx.session.regenerate()
          ctx.session.user = 'ann'
        },
        '/fresh': async (ctx) => ctx.session.regenerate({ keep: false }).then(() => ({ data: dataOf(ctx) })),
        '/all': (ctx) => ({ data: dataOf(ctx), id: ctx.sessionId }),
      })
      await client.get('/seed')
      const before = (await client.get('/all')).json as { id: string }
      await client.get('/login')
      const after = (await client.get('/all')).json as { id: string; data: unknown }
      assert.notEqual(after.id, before.id)
      assert.deepEqual(after.data, { cart: ['x'], user: 'ann' })
      assert.equal(await store.get(`koa:sess:${before.id}`), undefined)
      assert.deepEqual((await client.get('/fresh')).json, { data: {} })
      assert.equal(await store.get(`koa:sess:${after.id}`), undefined)
    })

    it('save() writes now and sends the id, even for an empty new session', async () => {
      const { client, rec } = await harness(store, {}, {
        '/save': async (ctx) => {
          await ctx.session.save()
          return { id: ctx.sessionId, calls: [...rec.calls] }
        },
      })
      const reply = await client.get('/save')
      const body = reply.json as { id: string; calls: string[] }
      assert.deepEqual(body.calls, ['apply'])
      assert.equal(client.jar.get('koa.sid'), body.id)
      assert.ok(await store.get(`koa:sess:${body.id}`))
    })

    it('reload() drops unsaved changes and reads the store again', async () => {
      const { client } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session.a = 1),
        '/reload': async (ctx) => {
          ctx.session.a = 99
          ctx.session.b = 2
          await ctx.session.reload()
          return dataOf(ctx)
        },
        '/all': dataOf,
      })
      await client.get('/seed')
      assert.deepEqual((await client.get('/reload')).json, { a: 1 })
      assert.deepEqual((await client.get('/all')).json, { a: 1 })
    })

    it('destroy() removes the session now', async () => {
      const { client } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session.a = 1),
        '/destroy': async (ctx) => {
          const id = ctx.sessionId
          await ctx.session.destroy()
          return { gone: (await store.get(`koa:sess:${id}`)) === undefined, session: ctx.session }
        },
      })
      await client.get('/seed')
      assert.deepEqual((await client.get('/destroy')).json, { gone: true, session: null })
      assert.equal(client.jar.has('koa.sid'), false)
    })

    it('discards the changes of a request that fails with a server error', async () => {
      const { client, rec } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session.a = 1),
        '/boom': (ctx) => {
          ctx.session.a = 2
          throw new Error('boom')
        },
        '/all': dataOf,
      })
      await client.get('/seed')
      rec.reset()
      assert.equal((await client.get('/boom')).status, 500)
      assert.deepEqual(rec.calls, ['get'])
      assert.deepEqual((await client.get('/all')).json, { a: 1 })
    })

    it('keeps the changes of a deliberate client error (ctx.throw(401)), new session cookie included', async () => {
      const { client } = await harness(store, {}, {
        '/login': (ctx) => {
          ctx.session.failedLogins = (ctx.session.failedLogins ?? 0) + 1
          ctx.throw(401, 'wrong password')
        },
        '/all': dataOf,
      })
      const reply = await client.get('/login')
      assert.equal(reply.status, 401)
      assert.equal(reply.body, 'wrong password')
      assert.ok(client.jar.has('koa.sid'))
      await client.get('/login')
      assert.deepEqual((await client.get('/all')).json, { failedLogins: 2 })
    })

    it('touch() extends the expiry and re-sends the cookie without changing data', async () => {
      const { client, rec } = await harness(store, { maxAge: '1h' }, {
        '/seed': (ctx) => void (ctx.session.a = 1),
        '/touch': (ctx) => ctx.session.touch(),
      })
      await client.get('/seed')
      rec.reset()
      const reply = await client.get('/touch')
      assert.deepEqual(rec.calls, ['get', 'apply'])
      assert.deepEqual(Object.keys(rec.patches[0]?.set ?? {}), ['$e'])
      assert.equal(reply.setCookies.length, 2)
    })

    it('keeps a per-session maxAge on later requests', async () => {
      const { client } = await harness(store, {}, {
        '/short': (ctx) => {
          ctx.session.maxAge = '2h'
          ctx.session.a = 1
        },
        '/write': (ctx) => void (ctx.session.b = 2),
        '/info': (ctx) => ({ maxAge: ctx.session.maxAge, expiresIn: (ctx.session.expiresAt?.getTime() ?? 0) - Date.now() }),
      })
      await client.get('/short')
      const reply = await client.get('/write')
      const expires = new Date(/expires=([^;]+)/.exec(reply.setCookies[0] ?? '')?.[1] ?? '').getTime()
      assert.ok(Math.abs(expires - (Date.now() + 2 * 3_600_000)) < 5_000)
      const info = (await client.get('/info')).json as { maxAge: number; expiresIn: number }
      assert.equal(info.maxAge, 2 * 3_600_000)
      assert.ok(Math.abs(info.expiresIn - 2 * 3_600_000) < 5_000)
    })

    it("maxAge 'session' sends a browser-session cookie (no expiry)", async () => {
      const { client } = await harness(store, { maxAge: 'session' }, { '/seed': (ctx) => void (ctx.session.a = 1) })
      const reply = await client.get('/seed')
      assert.match(reply.setCookies[0] ?? '', /^koa\.sid=[^;]+; path=\/; samesite=lax; httponly$/)
    })

    it('rolling re-sends the cookie and extends the expiry on every request that loaded the session', async () => {
      const { client, rec } = await harness(store, { rolling: true }, {
        '/seed': (ctx) => void (ctx.session.a = 1),
        '/read': (ctx) => ctx.session.a,
        '/untouched': () => 'ok',
      })
      await client.get('/untouched')
      assert.deepEqual(rec.calls, [])
      await client.get('/seed')
      rec.reset()
      const reply = await client.get('/read')
      assert.equal(reply.setCookies.length, 2)
      assert.deepEqual(rec.calls, ['get', 'apply'])
    })

    it('renew extends only when less than half of maxAge is left', async () => {
      const { client, rec } = await harness(store, { renew: true, maxAge: 1_000 }, {
        '/seed': (ctx) => void (ctx.session.a = 1),
        '/read': (ctx) => ctx.session.a,
      })
      const keep = keepCookies(await client.get('/seed'))
      rec.reset()
      assert.deepEqual((await client.get('/read')).setCookies, [])
      assert.deepEqual(rec.calls, ['get'])
      await new Promise((resolve) => setTimeout(resolve, 600))
      keep(client)
      rec.reset()
      assert.equal((await client.get('/read')).setCookies.length, 2)
      assert.deepEqual(rec.calls, ['get', 'apply'])
    })

    it('absoluteMaxAge ends a session however active it is, even for a client that keeps its cookie', async () => {
      const { client } = await harness(store, { absoluteMaxAge: 400, rolling: true }, {
        '/seed': (ctx) => void (ctx.session.a = 1),
        '/read': (ctx) => ({ a: ctx.session.a ?? null }),
      })
      const keep = keepCookies(await client.get('/seed'))
      const read = async () => {
        keep(client)
        return (await client.get('/read')).json
      }
      await new Promise((resolve) => setTimeout(resolve, 200))
      assert.deepEqual(await read(), { a: 1 })
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.deepEqual(await read(), { a: null })
    })

    it('saveUninitialized gives every visitor a stored session and cookie', async () => {
      const { client, rec } = await harness(store, { saveUninitialized: true }, { '/': () => 'hi' })
      const reply = await client.get('/')
      assert.equal(reply.setCookies.length, 2)
      assert.deepEqual(rec.calls, ['apply'])
      rec.reset()
      assert.deepEqual((await client.get('/')).setCookies, [])
      assert.deepEqual(rec.calls, ['get'])
    })

    it('update() appends from 100 concurrent requests to one key and keeps every one', async () => {
      const { client } = await harness(store, { lazy: true }, {
        '/start': async (ctx) => ctx.session.set('list', []),
        '/append': async (ctx) => {
          const n = Number(ctx.query.n)
          await ctx.session.update('list', (list: number[] = []) => [...list, n])
          return { after: ctx.session.list.includes(n) }
        },
        '/all': async (ctx) => (await ctx.loadSession()).toJSON(),
      })
      await client.get('/start')
      const replies = await Promise.all(Array.from({ length: 100 }, (_, n) => client.get(`/append?n=${n}`)))
      assert.deepEqual(replies.filter((reply) => reply.status !== 200 || !(reply.json as { after: boolean }).after).map((r) => `${r.status} ${r.body}`), [])
      const { list } = (await client.get('/all')).json as { list: number[] }
      assert.deepEqual([...list].sort((a, b) => a - b), Array.from({ length: 100 }, (_, n) => n))
    })

    it("conflicts: 'reject' answers 409 to the second of two requests that read and changed one key", async () => {
      let arrived = 0
      let release: () => void = () => {}
      let bothRead = new Promise<void>((resolve) => (release = resolve))
      const { client } = await harness(store, { conflicts: 'reject' }, {
        '/start': (ctx) => void (ctx.session.cart = []),
        '/add': async (ctx) => {
          const cart = [...ctx.session.cart, ctx.query.item]
          if (++arrived === 2) release()
          await bothRead
          ctx.session.cart = cart
          return 'added'
        },
        '/all': dataOf,
      })
      await client.get('/start')
      const acknowledged: string[] = []
      for (let round = 0; round < 20; round++) {
        arrived = 0
        bothRead = new Promise<void>((resolve) => (release = resolve))
        const replies = await Promise.all([client.get(`/add?item=a${round}`), client.get(`/add?item=b${round}`)])
        assert.deepEqual(replies.map((reply) => reply.status).sort(), [200, 409])
        const loser = replies.find((reply) => reply.status === 409)
        assert.equal(loser?.body, 'Session key "cart" was changed by another request; nothing was written. Retry.')
        acknowledged.push(replies[0]?.status === 200 ? `a${round}` : `b${round}`)
      }
      assert.deepEqual(((await client.get('/all')).json as { cart: string[] }).cart, acknowledged)
    })

    it("conflicts: 'reject' never refuses changes to different keys, blind writes or explicit writes", async () => {
      const { client } = await harness(store, { conflicts: 'reject' }, {
        '/start': (ctx) => void (ctx.session = { a: 0, b: 0, c: 0 }),
        '/a': (ctx) => void (ctx.session.a = ctx.session.a + 1),
        '/b': (ctx) => void (ctx.session.b = ctx.session.b + 1),
        '/blind': (ctx) => void (ctx.session.c = Number(ctx.query.v)),
        '/inc': (ctx) => ctx.session.increment('a').then(() => 'ok'),
        '/all': dataOf,
      })
      await client.get('/start')
      for (let round = 0; round < 10; round++) {
        const replies = await Promise.all([client.get('/a'), client.get('/b'), client.get(`/blind?v=${round}`), client.get(`/blind?v=${round}`)])
        assert.ok(replies.every((reply) => reply.status < 300), `statuses ${replies.map((reply) => reply.status)}`)
      }
      assert.deepEqual((await client.get('/all')).json, { a: 10, b: 10, c: 9 })
    })

    it("conflicts: 'reject' never refuses a request for what it wrote or read back itself", async () => {
      const { client } = await harness(store, { conflicts: 'reject' }, {
        '/start': (ctx) => void (ctx.session.n = 1),
        // A blind write read back: the value read is the request's own, which the store never held.
        '/blind-then-read': (ctx) => {
          ctx.session.cart = ['x']
          return { cart: ctx.session.cart }
        },
        // An increment made in the store, then a change to the same key.
        '/increment-then-set': async (ctx) => {
          const before = ctx.session.n
          await ctx.session.increment('n', 10)
          ctx.session.n = before + 100
          return { n: ctx.session.n }
        },
        // What was read of a session that then started over is no condition on the new one.
        '/start-over': async (ctx) => {
          const before = ctx.session.n
          await ctx.session.regenerate({ keep: false })
          await ctx.session.save()
          ctx.session.n = before + 1
        },
        '/all': dataOf,
      })
      await client.get('/start')
      assert.equal((await client.get('/blind-then-read')).status, 200)
      assert.equal((await client.get('/increment-then-set')).status, 200)
      assert.deepEqual((await client.get('/all')).json, { n: 101, cart: ['x'] })
      assert.equal((await client.get('/start-over')).status, 204)
      assert.deepEqual((await client.get('/all')).json, { n: 102 })
    })

    it("conflicts: 'reject' refuses a change to a key that another process changed after this request read it", async () => {
      const { client } = await harness(store, { conflicts: 'reject' }, {
        '/start': (ctx) => void (ctx.session.plan = 'free'),
        '/upgrade': async (ctx) => {
          const plan = ctx.session.plan
          await store.apply(`koa:sess:${ctx.sessionId}`, { set: { plan: 'team' }, ttlMs: 60_000 }) // another process
          ctx.session.plan = `${plan}+pro`
        },
        '/all': dataOf,
      })
      await client.get('/start')
      assert.equal((await client.get('/upgrade')).status, 409)
      assert.deepEqual((await client.get('/all')).json, { plan: 'team' })
    })

    it('login() binds sessions to a user: listByUser shows them (never data), destroyByUser keeps exactly "except"', async () => {
      const user = `user-${Math.random()}`
      const { client, sessions, running } = await harness(store, {}, {
        '/login': async (ctx) => {
          ctx.session.secret = 'never listed'
          await ctx.session.login(user)
          return { id: ctx.sessionId }
        },
        '/me': (ctx) => ({ id: ctx.sessionId ?? null, secret: ctx.session.secret ?? null }),
        '/logout': (ctx) => ctx.session.logout(),
      })
      const devices = [client, new Client(running.url), new Client(running.url)]
      const ids: string[] = []
      for (const device of devices) ids.push(((await device.get('/login')).json as { id: string }).id)
      const listed = await sessions.listByUser(user)
      assert.deepEqual(listed.map((s) => s.id).sort(), [...ids].sort())
      for (const entry of listed) {
        assert.deepEqual(Object.keys(entry).sort(), ['createdAt', 'expiresAt', 'id', 'lastSeenAt'])
        assert.ok(entry.createdAt instanceof Date && entry.expiresAt instanceof Date && entry.lastSeenAt instanceof Date)
      }
      assert.deepEqual(await sessions.destroyByUser(user, { except: ids[0] as string }).then((gone) => gone.sort()), ids.slice(1).sort())
      assert.deepEqual((await devices[0]!.get('/me')).json, { id: ids[0], secret: 'never listed' })
      assert.deepEqual((await devices[1]!.get('/me')).json, { id: null, secret: null })
      assert.deepEqual((await sessions.listByUser(user)).map((s) => s.id), [ids[0]])
      await devices[0]!.get('/logout')
      assert.deepEqual(await sessions.listByUser(user), [])
    })

    it('login() regenerates the id, and the index entry outlives the session it names', async () => {
      const user = `user-${Math.random()}`
      const { client, sessions } = await harness(store, { maxAge: 300 }, {
        '/visit': (ctx) => void (ctx.session.seen = true),
        '/login': async (ctx) => ctx.session.login(user),
        '/me': (ctx) => ({ id: ctx.sessionId ?? null }),
      })
      const keep = keepCookies(await client.get('/visit'))
      const before = client.jar.get('koa.sid')
      keep(client)
      const login = await client.get('/login')
      const after = keepCookies(login)
      after(client)
      const id = client.jar.get('koa.sid') as string
      assert.notEqual(id, before)
      const indexKey = `koa:sess:user:${encodeURIComponent(user)}`
      const index = await store.get(indexKey)
      const session = await store.get(`koa:sess:${id}`)
      assert.ok(index && session && (index.$e as number) > (session.$e as number))
      await new Promise((resolve) => setTimeout(resolve, 400))
      assert.deepEqual(await sessions.listByUser(user), [])
    })

    it("logging in again (or regenerating a bound session) leaves one entry in the user's index, not one per login", async () => {
      const user = `user-${Math.random()}`
      const { client } = await harness(store, {}, {
        '/login': async (ctx) => ctx.session.login(user),
        '/regenerate': async (ctx) => ctx.session.regenerate(),
      })
      for (const path of ['/login', '/login', '/regenerate', '/login']) assert.equal((await client.get(path)).status, 204)
      const index = await store.get(`koa:sess:user:${encodeURIComponent(user)}`)
      assert.deepEqual(Object.keys(index ?? {}).filter((key) => !key.startsWith('$')), [client.jar.get('koa.sid')])
    })

    it('regenerate({ graceMs }) keeps the old id readable with its old data only, and read-only', async () => {
      const { client, running } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session.step = 'before'),
        '/login': async (ctx) => {
          await ctx.session.regenerate({ graceMs: 400 })
          ctx.session.step = 'after'
        },
        '/me': (ctx) => ({ step: ctx.session.step ?? null }),
        '/write': (ctx) => void (ctx.session.step = 'in flight'),
      })
      await client.get('/seed')
      const old = new Client(running.url)
      for (const [name, value] of client.jar) old.jar.set(name, value)
      await client.get('/login')
      assert.deepEqual((await client.get('/me')).json, { step: 'after' })
      assert.deepEqual((await old.get('/me')).json, { step: 'before' })
      assert.equal((await old.get('/write')).status, 409)
      assert.deepEqual((await client.get('/me')).json, { step: 'after' })
      await new Promise((resolve) => setTimeout(resolve, 500))
      assert.deepEqual((await old.get('/me')).json, { step: null })
    })

    it('lazy: the old id of a graced regenerate stays read-only for writes made without loading, and still expires', async () => {
      const { client, running } = await harness(store, { lazy: true }, {
        '/seed': (ctx) => void (ctx.session.step = 'before'),
        '/login': async (ctx) => {
          await ctx.session.regenerate({ graceMs: 400 })
          ctx.session.step = 'after'
        },
        '/me': async (ctx) => ({ step: (await ctx.loadSession()).step ?? null }),
        '/assign': (ctx) => void (ctx.session.step = 'in flight'),
        '/set': (ctx) => ctx.session.set('step', 'in flight'),
        '/increment': (ctx) => ctx.session.increment('n'),
        '/touch': (ctx) => ctx.session.touch(),
        '/destroy': (ctx) => ctx.session.destroy(),
        '/regenerate-empty': (ctx) => ctx.session.regenerate({ keep: false }),
      })
      await client.get('/seed')
      const old = new Client(running.url)
      for (const [name, value] of client.jar) old.jar.set(name, value)
      await client.get('/login')
      for (const path of ['/assign', '/set', '/increment', '/destroy', '/regenerate-empty']) assert.equal((await old.get(path)).status, 409, path)
      assert.equal((await old.get('/touch')).status, 204)
      assert.deepEqual((await old.get('/me')).json, { step: 'before' })
      await new Promise((resolve) => setTimeout(resolve, 500))
      assert.deepEqual((await old.get('/me')).json, { step: null })
      assert.deepEqual((await client.get('/me')).json, { step: 'after' })
    })

    it('refuses at the assignment a nested write that would leave a hole in an array or make a cycle, and stores nothing', async () => {
      /** What a handler that catches the refusal answers. */
      const refusal = (write: () => unknown): string => {
        try {
          write()
          return 'written'
        } catch (error) {
          return `${(error as Error).name}: ${(error as Error).message}`
        }
      }
      const { client, rec } = await harness(store, {}, {
        '/seed': (ctx) => void (ctx.session = { list: [1], obj: { a: {} }, arr: [[]] }),
        '/hole': (ctx) => refusal(() => (ctx.session.list[3] = 4)),
        '/length': (ctx) => refusal(() => (ctx.session.list.length = 3)),
        '/self': (ctx) => refusal(() => (ctx.session.obj.a.self = ctx.session.obj)),
        '/back': (ctx) => refusal(() => (ctx.session.obj.a.back = ctx.session.obj.a)),
        '/push': (ctx) => refusal(() => ctx.session.arr[0].push(ctx.session.arr)),
        '/all': dataOf,
      })
      await client.get('/seed')
      rec.reset()
      const answers = []
      for (const path of ['/hole', '/length', '/self', '/back', '/push']) {
        const reply = await client.get(path)
        answers.push(`${reply.status} ${reply.body}`)
      }
      assert.deepEqual(answers, [
        '200 SessionValueError: Session key "list": at list[3]: writing here would leave a hole in the array (it has 1 item), which JSON turns into null',
        '200 SessionValueError: Session key "list": a length of 3 would leave a hole in the array (it has 1 item), which JSON turns into null',
        '200 SessionValueError: Session key "obj": at obj.a.self: the value is cyclic (it contains itself)',
        '200 SessionValueError: Session key "obj": at obj.a.back: the value is cyclic (it contains itself)',
        '200 SessionValueError: Session key "arr": at arr[0][0]: the value is cyclic (it contains itself)',
      ])
      assert.deepEqual(rec.calls, ['get', 'get', 'get', 'get', 'get'])
      assert.deepEqual((await client.get('/all')).json, { list: [1], obj: { a: {} }, arr: [[]] })
    })

    it('refuses a write past maxBytes with a clear error, and stores nothing', async () => {
      const { client, errors } = await harness(store, { maxBytes: 1_000 }, {
        '/seed': (ctx) => void (ctx.session.a = 1),
        '/big': (ctx) => void (ctx.session.blob = 'x'.repeat(2_000)),
        '/all': dataOf,
      })
      await client.get('/seed')
      assert.equal((await client.get('/big')).status, 500)
      assert.match(errors.at(-1)?.message ?? '', /over the maxBytes limit of 1000/)
      assert.deepEqual((await client.get('/all')).json, { a: 1 })
    })
  })
}
