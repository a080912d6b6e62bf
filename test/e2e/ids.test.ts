/**
 * How ids travel and what a bad one gets: signed cookies, key rotation, tampering, header and
 * custom transports, events, and store outages, through a real server.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import Keygrip from 'keygrip'
import type { Context } from 'koa'
import { headerTransport, MemoryStore, session, type SessionTransport } from '../../src/index.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import { failingStore } from '../helpers/recording-store.js'
import { closeHarnesses, harness } from './behaviour.js'

const servers: Running[] = []
after(async () => {
  for (const running of servers) await running.close()
  await closeHarnesses()
})

const routes = {
  '/login': (ctx: Context) => void (ctx.session.user = 'ann'),
  '/me': (ctx: Context) => ({ user: ctx.session.user ?? null, id: ctx.sessionId ?? null }),
  '/logout': (ctx: Context) => void (ctx.session = null),
}

describe('signed cookie', () => {
  it('ignores a tampered signature without a store lookup, and emits session:invalid', async () => {
    const { client, rec, running } = await harness(new MemoryStore(), {}, routes)
    const invalid: unknown[] = []
    running.app.on('session:invalid', (payload: { id: unknown }) => invalid.push(payload.id))
    await client.get('/login')
    client.jar.set('koa.sid.sig', 'forged-signature-AAAAAAAAAAA')
    rec.reset()
    assert.deepEqual((await client.get('/me')).json, { user: null, id: null })
    assert.deepEqual(rec.calls, [])
    assert.deepEqual(invalid, [undefined])
  })

  it('ignores a cookie without its signature', async () => {
    const { client, rec } = await harness(new MemoryStore(), {}, routes)
    await client.get('/login')
    client.jar.delete('koa.sid.sig')
    rec.reset()
    assert.deepEqual((await client.get('/me')).json, { user: null, id: null })
    assert.deepEqual(rec.calls, [])
  })

  it('never looks up a malformed id, even when it is correctly signed', async () => {
    const { client, rec } = await harness(new MemoryStore(), {}, routes)
    const keys = new Keygrip(['test-key-newest'])
    for (const bad of ['short', 'has.dot.AAAAAAAAAAAAAAAAAAAA', 'x'.repeat(129)]) {
      client.jar.set('koa.sid', bad)
      client.jar.set('koa.sid.sig', keys.sign(`koa.sid=${bad}`))
      rec.reset()
      assert.deepEqual((await client.get('/me')).json, { user: null, id: null })
      assert.deepEqual(rec.calls, [])
    }
  })

  it('accepts a cookie signed with an older key and re-signs it with the newest, keeping its expiry', async () => {
    const { client, running } = await harness(new MemoryStore(), { maxAge: '1h' }, routes)
    await client.get('/login')
    const id = client.jar.get('koa.sid') as string
    client.jar.set('koa.sid.sig', new Keygrip(['test-key-older']).sign(`koa.sid=${id}`))
    const reply = await client.get('/me')
    assert.deepEqual(reply.json, { user: 'ann', id })
    const sig = reply.setCookies.find((line) => line.startsWith('koa.sid.sig=')) ?? ''
    assert.equal(client.jar.get('koa.sid.sig'), new Keygrip(['test-key-newest']).sign(`koa.sid=${id}`))
    assert.match(sig, /expires=/)
    assert.match(sig, /httponly/)
    // Verified once, remembered: the next request neither re-signs nor fails.
    assert.deepEqual((await client.get('/me')).setCookies, [])
    // A key removed from app.keys no longer verifies anything it signed, remembered or not.
    running.app.keys = ['a-brand-new-key']
    assert.deepEqual((await client.get('/me')).json, { user: null, id: null })
  })

  it('works unsigned when cookie.signed is false, with no app.keys', async () => {
    const app = koaApp()
    app.keys = undefined as unknown as string[]
    app.use(session({ cookie: { signed: false } }))
    app.use((ctx) => {
      ctx.session.views = (ctx.session.views ?? 0) + 1
      ctx.body = { views: ctx.session.views }
    })
    const running = await listen(app)
    servers.push(running)
    const client = new Client(running.url)
    await client.get('/')
    assert.deepEqual((await client.get('/')).json, { views: 2 })
    assert.equal(client.jar.has('koa.sid.sig'), false)
  })

  it('refuses to run signed without app.keys, naming the option', async () => {
    const app = koaApp()
    app.keys = undefined as unknown as string[]
    const errors: Error[] = []
    app.on('error', (error: Error) => errors.push(error))
    app.use(session())
    const running = await listen(app)
    servers.push(running)
    assert.equal((await new Client(running.url).get('/')).status, 500)
    assert.match(errors[0]?.message ?? '', /cookie\.signed is true \(the default\) but app\.keys is not set/)
  })

  it('merges cookie options over the defaults', async () => {
    const { client } = await harness(new MemoryStore(), { key: 'sid', cookie: { sameSite: 'strict', path: '/app', priority: 'high' } }, {
      '/app': (ctx) => void (ctx.session.a = 1),
    })
    const [cookie = ''] = (await client.get('/app')).setCookies
    assert.match(cookie, /^sid=[^;]+; path=\/app; expires=[^;]+; priority=high; samesite=strict; httponly$/)
  })
})

describe('header transport', () => {
  it('carries the id in a header: new, read, rotated and cleared ids come back in it, with Vary and no cookie', async () => {
    const { client, rec } = await harness(new MemoryStore(), { transport: headerTransport() }, {
      ...routes,
      '/rotate': async (ctx: Context) => ctx.session.regenerate(),
    })
    const login = await client.get('/login')
    const id = login.headers.get('x-session-id') ?? ''
    assert.match(id, /^[A-Za-z0-9_-]{22}$/)
    assert.match(login.headers.get('vary') ?? '', /x-session-id/)
    assert.deepEqual(login.setCookies, [])
    const me = await client.get('/me', { 'x-session-id': id })
    assert.deepEqual(me.json, { user: 'ann', id })
    assert.equal(me.headers.get('x-session-id'), null)
    // It was personalised by the header, though no id went back: a cache must not share it.
    assert.match(me.headers.get('vary') ?? '', /x-session-id/)
    const rotated = (await client.get('/rotate', { 'x-session-id': id })).headers.get('x-session-id') ?? ''
    assert.ok(rotated !== id && rotated.length === 22)
    assert.deepEqual((await client.get('/me', { 'x-session-id': rotated })).json, { user: 'ann', id: rotated })
    assert.equal((await client.get('/logout', { 'x-session-id': rotated })).headers.get('x-session-id'), '')
    rec.reset()
    assert.deepEqual((await client.get('/me', { 'x-session-id': 'not a valid id' })).json, { user: null, id: null })
    assert.deepEqual(rec.calls, [])
  })

  it('serves the lazy and blind-write paths exactly as the cookie does', async () => {
    const { client, rec } = await harness(new MemoryStore(), { transport: headerTransport(), lazy: true }, {
      '/login': (ctx: Context) => void (ctx.session.user = 'ann'),
      '/blind': async (ctx: Context) => void (await ctx.session.set('n', 1)),
      '/untouched': () => 'ok',
      '/me': async (ctx: Context) => (await ctx.loadSession()).toJSON(),
    })
    const id = (await client.get('/login')).headers.get('x-session-id') ?? ''
    rec.reset()
    assert.equal((await client.get('/untouched', { 'x-session-id': id })).body, 'ok')
    assert.equal((await client.get('/blind', { 'x-session-id': id })).status, 204)
    assert.deepEqual(rec.calls, ['applyIf'])
    assert.deepEqual((await client.get('/me', { 'x-session-id': id })).json, { user: 'ann', n: 1 })
  })

  it('refuses cookie options beside a transport, naming both', () => {
    assert.throws(() => session({ transport: headerTransport(), cookie: { secure: true } }), /option cookie applies only to the cookie transport/)
  })
})

describe('custom transport', () => {
  it('takes the id from wherever get() finds it, e.g. a query parameter for a websocket handshake', async () => {
    const sent: Array<string | null> = []
    const query: SessionTransport = {
      get: (ctx) => (typeof ctx.query.sid === 'string' ? ctx.query.sid : undefined),
      set: (_ctx, id) => void sent.push(id),
    }
    const { client } = await harness(new MemoryStore(), { transport: query }, routes)
    await client.get('/login')
    const id = sent[0] as string
    assert.deepEqual((await client.get(`/me?sid=${id}`)).json, { user: 'ann', id })
  })
})

describe('events', () => {
  it('reports created, saved, destroyed and expired with the context and id, never data', async () => {
    const store = new MemoryStore()
    const { client, running } = await harness(store, {}, {
      ...routes,
      '/change': (ctx: Context) => void (ctx.session.more = 1),
    })
    const seen: string[] = []
    for (const name of ['session:created', 'session:saved', 'session:destroyed', 'session:expired']) {
      running.app.on(name, (payload: Record<string, unknown>) => {
        assert.deepEqual(Object.keys(payload).sort(), ['ctx', 'id'])
        assert.match(String(payload.id), /^[A-Za-z0-9_-]{22}$/)
        seen.push(name)
      })
    }
    await client.get('/login')
    await client.get('/change')
    await client.get('/logout')
    await client.get('/login')
    await store.destroy(`koa:sess:${client.jar.get('koa.sid')}`) // as if it had expired in the store
    await client.get('/me')
    assert.deepEqual(seen, [
      'session:created', 'session:saved', 'session:saved', 'session:destroyed',
      'session:created', 'session:saved', 'session:expired',
    ])
  })
})

describe('store outage', () => {
  it('answers 503 without details, tells the app what failed, and emits session:error', async () => {
    const { client, errors, running } = await harness(failingStore(), {}, routes)
    const events: unknown[] = []
    running.app.on('session:error', ({ error }: { error: Error }) => events.push(error.message))
    const login = await client.get('/login')
    assert.equal(login.status, 503)
    assert.equal(login.body, 'Service Unavailable')
    assert.deepEqual(login.setCookies, [])
    assert.match(errors[0]?.message ?? '', /^Session store failed during apply: connect ECONNREFUSED/)
    assert.equal(events.length, 1)
  })

  it('a request with a valid cookie fails at load when the store is down, before any handler runs', async () => {
    const inner = new MemoryStore()
    const live = await harness(inner, {}, routes)
    await live.client.get('/login')
    const down = await harness(failingStore(), {}, {
      '/me': () => {
        throw new Error('the handler must not run')
      },
    })
    down.client.jar.set('koa.sid', live.client.jar.get('koa.sid') as string)
    down.client.jar.set('koa.sid.sig', live.client.jar.get('koa.sid.sig') as string)
    assert.equal((await down.client.get('/me')).status, 503)
    assert.match(down.errors[0]?.message ?? '', /during get/)
  })

  it('ctx.session before the session middleware says where the middleware belongs', async () => {
    const app = koaApp()
    const errors: Error[] = []
    app.on('error', (error: Error) => errors.push(error))
    app.use(async (ctx, next) => {
      if (ctx.path === '/early') ctx.body = ctx.session
      else await next()
    })
    app.use(session())
    const running = await listen(app)
    servers.push(running)
    const client = new Client(running.url)
    await client.get('/')
    assert.equal((await client.get('/early')).status, 500)
    assert.match(errors[0]?.message ?? '', /app\.use\(session\(\)\) must come before/)
  })

})
