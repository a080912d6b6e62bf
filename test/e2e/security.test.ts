/**
 * Security behaviours through a real server, one test each, beyond what ids.test.ts and the
 * behaviour suite already pin (tampered and unsigned cookies, a cookie signed with an older key,
 * regenerate() destroying the old id, absoluteMaxAge under rolling reads):
 * - fixation: an id planted before login leads nowhere after it, eager and lazy;
 * - key rotation by assigning app.keys and keygrip-style in place;
 * - Secure cookies behind a TLS-terminating proxy, and a clear failure without one;
 * - no session id or data in error messages, causes, Koa's log, or event payloads;
 * - absoluteMaxAge ends a session kept busy with writes and increments.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { inspect } from 'node:util'
import { after, describe, it } from 'node:test'
import Keygrip from 'keygrip'
import type Koa from 'koa'
import type { Context } from 'koa'
import { createClient } from 'redis'
import { type CookieOptions, headerTransport, MemoryStore, session, type SessionOptions, type Store } from '../../src/index.js'
import { RedisStore } from '../../src/stores/redis/index.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import { startRedis } from '../helpers/redis-server.js'
import { closeHarnesses, harness } from './behaviour.js'

const servers: Running[] = []
after(async () => {
  for (const running of servers.splice(0)) await running.close()
  await closeHarnesses()
})

async function serve(app: Koa): Promise<Running> {
  const running = await listen(app)
  servers.push(running)
  return running
}

/** A client holding the same cookies as `from`, as a browser the cookies were copied (or planted) into. */
function copyOf(from: Client): Client {
  const copy = new Client(from.base)
  for (const [name, value] of from.jar) copy.jar.set(name, value)
  return copy
}

describe('session fixation', () => {
  for (const lazy of [false, true]) {
    it(`an id planted before login leads nowhere after it (${lazy ? 'lazy' : 'eager'}): no data, and writes through it never reach the victim`, async () => {
      const store = new MemoryStore()
      const load = async (ctx: Context) => (lazy ? await ctx.loadSession() : ctx.session)
      const { client: attacker } = await harness(store, { lazy }, {
        '/visit': (ctx) => void (ctx.session.visited = true),
        '/login': async (ctx) => {
          await ctx.session.regenerate()
          ctx.session.user = 'victim'
          ctx.session.card = 'victim-card'
        },
        '/me': async (ctx) => {
          const data = (await load(ctx))?.toJSON()
          return { id: ctx.sessionId ?? null, data }
        },
        '/note': async (ctx) => {
          if (lazy) await ctx.session.set('note', 'from the attacker')
          else ctx.session.note = 'from the attacker'
        },
      })
      await attacker.get('/visit')
      const planted = attacker.jar.get('koa.sid') as string
      const victim = copyOf(attacker) // the attacker plants its cookie in the victim's browser
      const login = await victim.get('/login')
      const victimId = victim.jar.get('koa.sid') as string
      assert.notEqual(victimId, planted, 'login kept the planted id')
      assert.ok(login.setCookies.some((line) => line.startsWith(`koa.sid=${victimId};`)))
      assert.equal(await store.get(`koa:sess:${planted}`), undefined, 'the planted id still exists')

      // The attacker replays the planted cookie: nothing of the victim's session, no id.
      assert.deepEqual((await attacker.get('/me')).json, { id: null, data: {} })
      // It writes through it: whatever that creates, the victim's session is untouched.
      assert.equal((await attacker.get('/note')).status, 204)
      const seen = (await attacker.get('/me')).json as { id: string | null; data: Record<string, unknown> }
      assert.notEqual(seen.id, victimId)
      assert.equal(seen.data.user, undefined)
      assert.deepEqual((await victim.get('/me')).json, { id: victimId, data: { visited: true, user: 'victim', card: 'victim-card' } })
    })
  }
})

describe('session fixation before login, lazy: a write never adopts an id the store does not hold', () => {
  for (const transport of ['cookie', 'header'] as const) {
    it(`a planted id that names no session (${transport}) gets a new id at the victim's first write, which the attacker cannot read`, async () => {
      const store = new MemoryStore()
      const options = transport === 'header' ? { lazy: true, transport: headerTransport() } : { lazy: true }
      const { client, rec } = await harness(store, options, {
        '/visit': (ctx) => void (ctx.session.visited = true),
        '/gone': (ctx) => void (ctx.session = null),
        '/address': (ctx) => void (ctx.session.address = 'victim street 1'),
        '/set': (ctx) => ctx.session.set('address', 'victim street 1'),
        '/me': async (ctx) => ({ id: ctx.sessionId ?? null, data: (await ctx.loadSession())?.toJSON() }),
      })
      let planted = 'AttackerChosenId_0123456789'
      const headers: Record<string, string> = transport === 'header' ? { 'x-session-id': planted } : {}
      // With the cookie: a genuine signed id whose session the attacker ended (the signature still verifies).
      const cookies = new Map<string, string>()
      if (transport === 'cookie') {
        await client.get('/visit')
        for (const [name, value] of client.jar) cookies.set(name, value)
        planted = cookies.get('koa.sid') as string
        await client.get('/gone')
      }
      for (const path of ['/address', '/set']) {
        for (const [name, value] of cookies) client.jar.set(name, value)
        rec.reset()
        const reply = await client.get(path, headers)
        assert.ok(reply.status < 300, `${path}: ${reply.status}`)
        assert.equal(await store.get(`koa:sess:${planted}`), undefined, `${path} stored the victim's data under the planted id`)
        const sent = transport === 'header' ? reply.headers.get('x-session-id') : client.jar.get('koa.sid')
        assert.ok(sent && sent !== planted, `${path}: the victim did not get a new id`)
        assert.deepEqual((await store.get(`koa:sess:${sent}`))?.address, 'victim street 1')
      }
    })
  }
})

describe('key rotation', () => {
  const routes = {
    '/login': (ctx: Context) => void (ctx.session.user = 'ann'),
    '/me': (ctx: Context) => ({ user: ctx.session.user ?? null }),
  }
  const sig = (key: string, id: string) => new Keygrip([key]).sign(`koa.sid=${id}`)

  it('app.keys = [new, old] accepts cookies signed with the old key and re-signs them with the new; dropping the old key then ends only the cookies never re-signed', async () => {
    const { client, running, rec } = await harness(new MemoryStore(), {}, routes)
    running.app.keys = ['key-2024']
    await client.get('/login')
    const id = client.jar.get('koa.sid') as string
    assert.equal(client.jar.get('koa.sid.sig'), sig('key-2024', id))
    const tab = copyOf(client) // a second tab, back during the rotation
    const away = copyOf(client) // a third, not back before the old key goes

    running.app.keys = ['key-2025', 'key-2024']
    const rotated = await client.get('/me')
    assert.deepEqual(rotated.json, { user: 'ann' })
    assert.equal(client.jar.get('koa.sid.sig'), sig('key-2025', id), 'not re-signed with the new key')
    assert.deepEqual((await client.get('/me')).setCookies, [], 'a re-signed cookie is re-signed again')
    assert.deepEqual((await tab.get('/me')).json, { user: 'ann' })
    assert.equal(tab.jar.get('koa.sid.sig'), sig('key-2025', id))

    running.app.keys = ['key-2025']
    assert.deepEqual((await client.get('/me')).json, { user: 'ann' })
    assert.deepEqual((await tab.get('/me')).json, { user: 'ann' })
    rec.reset()
    assert.deepEqual((await away.get('/me')).json, { user: null })
    assert.deepEqual(rec.calls, [], 'a cookie signed with a dropped key reached the store')
  })

  it("keygrip's rotation in place (app.keys.unshift(new), later app.keys.pop()) works the same, and a replaced key stops verifying at once", async () => {
    const { client, running, rec } = await harness(new MemoryStore(), {}, routes)
    const keys = ['key-a']
    running.app.keys = keys
    await client.get('/login')
    await client.get('/me') // verified with key-a and remembered
    const id = client.jar.get('koa.sid') as string
    const stale = copyOf(client)

    keys.unshift('key-b')
    assert.deepEqual((await client.get('/me')).json, { user: 'ann' })
    assert.equal(client.jar.get('koa.sid.sig'), sig('key-b', id))
    keys.pop()
    assert.deepEqual((await client.get('/me')).json, { user: 'ann' })
    rec.reset()
    assert.deepEqual((await stale.get('/me')).json, { user: null }, 'a remembered verification outlived its key')
    assert.deepEqual(rec.calls, [])

    keys[0] = 'key-c' // the newest key leaked: replaced outright
    assert.deepEqual((await client.get('/me')).json, { user: null }, 'a remembered verification outlived its key')
  })
})

describe('Secure cookies behind a proxy', () => {
  async function secureApp(proxy: boolean, cookie: CookieOptions = { secure: true }): Promise<{ running: Running; errors: Error[] }> {
    const app = koaApp()
    app.proxy = proxy
    const errors: Error[] = []
    app.on('error', (error: Error) => errors.push(error))
    app.use(session({ cookie }))
    app.use((ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ann'
      ctx.body = { user: ctx.session.user ?? null }
    })
    return { running: await serve(app), errors }
  }
  const HTTPS = { 'x-forwarded-proto': 'https' }

  it('sends Secure cookies when app.proxy is on and X-Forwarded-Proto says https, and reads them back', async () => {
    const { running } = await secureApp(true)
    const client = new Client(running.url)
    const login = await client.get('/login', HTTPS)
    assert.equal(login.status, 200)
    assert.equal(login.setCookies.length, 2)
    for (const line of login.setCookies) assert.match(line, /; secure; httponly$/)
    assert.deepEqual((await client.get('/me', HTTPS)).json, { user: 'ann' })
  })

  it("sameSite 'none' with secure left unset is Secure on such a request, as in koa-session", async () => {
    const { running } = await secureApp(true, { sameSite: 'none' })
    const login = await new Client(running.url).get('/login', HTTPS)
    assert.equal(login.setCookies.length, 2)
    for (const line of login.setCookies) assert.match(line, /; samesite=none; secure; httponly$/)
  })

  it('without the header (or with it but app.proxy off) fails with 500 and says why, sending no cookie', async () => {
    for (const [proxy, headers] of [[true, {}], [false, HTTPS]] as const) {
      const { running, errors } = await secureApp(proxy)
      const reply = await new Client(running.url).get('/login', headers)
      assert.equal(reply.status, 500)
      assert.equal(reply.body, 'Internal Server Error')
      assert.deepEqual(reply.setCookies, [])
      assert.match(errors[0]?.message ?? '', /option cookie.secure is true but this request came over plain HTTP.*app.proxy = true/)
    }
  })
})

describe('no session id or data in errors, logs or event payloads', () => {
  const SECRET = `SECRET-${randomBytes(6).toString('hex')}`

  interface Capture {
    running: Running
    client: Client
    /** Everything an operator could see: app errors in full (causes included), Koa's own log, event payloads. */
    texts: string[]
    statuses: number[]
    events: Array<Record<string, unknown>>
  }

  /** An app that logs the way Koa does by default (not silent), with everything captured. */
  async function observed(store: Store, options: SessionOptions, routes: Record<string, (ctx: Context) => unknown>): Promise<Capture> {
    const app = koaApp()
    app.silent = false
    const texts: string[] = []
    const events: Array<Record<string, unknown>> = []
    app.on('error', (error: Error) => {
      texts.push(inspect(error, { depth: Infinity }))
      app.onerror(error) // Koa's default log line, captured below
    })
    for (const name of ['session:error', 'session:saved', 'session:created', 'session:destroyed', 'session:expired', 'session:invalid']) {
      app.on(name, (payload: Record<string, unknown>) => {
        events.push({ name, keys: Object.keys(payload).sort() })
        if (payload.error) texts.push(inspect(payload.error, { depth: Infinity }))
      })
    }
    app.use(session({ ...options, store }))
    app.use(async (ctx) => {
      const route = routes[ctx.path]
      if (route) ctx.body = (await route(ctx)) ?? 'ok'
    })
    return { running: await serve(app), client: new Client(''), texts, statuses: [], events }
  }

  /** Runs `work` with console.error captured into `texts` (Koa's default error log writes there). */
  async function withConsole(texts: string[], work: () => Promise<void>): Promise<void> {
    const original = console.error
    console.error = (...args: unknown[]) => void texts.push(args.map((arg) => (typeof arg === 'string' ? arg : inspect(arg, { depth: Infinity }))).join(' '))
    try {
      await work()
    } finally {
      console.error = original
    }
  }

  function assertClean(capture: Capture, ids: string[], what: string): void {
    assert.ok(capture.texts.length > 0, `${what}: nothing was logged, so nothing was checked`)
    for (const text of capture.texts) {
      assert.ok(!text.includes(SECRET), `${what}: session data in ${text.slice(0, 2000)}`)
      for (const id of ids) assert.ok(!text.includes(id), `${what}: the session id in ${text.slice(0, 2000)}`)
    }
    for (const event of capture.events) {
      assert.ok(['ctx,id', 'ctx,error,id'].includes(String(event.keys)), `${String(event.name)} carried ${String(event.keys)}`)
    }
  }

  const dataRoutes = {
    '/seed': (ctx: Context) => void (ctx.session.card = SECRET),
    '/read': (ctx: Context) => ({ has: ctx.session.card !== undefined }),
    '/write': (ctx: Context) => void (ctx.session.more = `${SECRET}-more`),
    '/count': async (ctx: Context) => ({ n: await ctx.session.increment('n') }),
  }

  for (const client of ['ioredis', 'node-redis'] as const) {
    it(`a Redis outage (${client}): 503s whose errors, causes and log lines name neither`, async () => {
      const redis = await startRedis()
      const node = client === 'node-redis' ? await createClient({ url: redis.url }).on('error', () => undefined).connect() : undefined
      const store = node ? new RedisStore({ client: node, timeoutMs: 300 }) : new RedisStore({ url: redis.url, timeoutMs: 300 })
      try {
        const capture = await observed(store, {}, dataRoutes)
        const browser = new Client(capture.running.url)
        assert.equal((await browser.get('/seed')).status, 200)
        const id = browser.jar.get('koa.sid') as string
        await redis.stop('SIGKILL')
        await withConsole(capture.texts, async () => {
          for (const path of ['/read', '/write', '/count']) {
            const reply = await browser.get(path)
            assert.equal(reply.status, 503)
            assert.equal(reply.body, 'Service Unavailable')
          }
        })
        assertClean(capture, [id], `${client} outage`)
      } finally {
        await store.close()
        node?.destroy()
        await redis.close()
      }
    })
  }

  it('a Redis that refuses writes (READONLY, as an old master after a failover; node-redis): errors name neither', async () => {
    const redis = await startRedis()
    const master = await startRedis()
    const node = await createClient({ url: redis.url }).on('error', () => undefined).connect()
    try {
      const capture = await observed(new RedisStore({ client: node, timeoutMs: 1_000 }), {}, dataRoutes)
      const browser = new Client(capture.running.url)
      await browser.get('/seed')
      const id = browser.jar.get('koa.sid') as string
      await redis.cli('replicaof', '127.0.0.1', String(master.port))
      await withConsole(capture.texts, async () => {
        for (const path of ['/write', '/count']) assert.equal((await browser.get(path)).status, 503)
      })
      assert.ok(capture.texts.some((text) => text.includes('READONLY')))
      assertClean(capture, [id], 'READONLY')
    } finally {
      node.destroy()
      await redis.close()
      await master.close()
    }
  })

  it('a session too large, a conflict, an update() out of retries and a refused value: errors name neither id nor data', async () => {
    const store = new MemoryStore()
    let racing: Promise<unknown> = Promise.resolve()
    const capture = await observed(store, { maxBytes: 2_000, conflicts: 'reject' }, {
      ...dataRoutes,
      '/big': (ctx: Context) => void (ctx.session.blob = `${SECRET}${'x'.repeat(3_000)}`),
      '/race': async (ctx: Context) => {
        const card = ctx.session.card as string
        await store.apply(`koa:sess:${ctx.sessionId}`, { set: { card: `${SECRET}-other` }, ttlMs: 60_000 }) // another request
        ctx.session.card = `${card}-changed`
      },
      '/update': async (ctx: Context) => {
        await ctx.session.update('card', (card: string) => {
          racing = store.apply(`koa:sess:${ctx.sessionId}`, { set: { card: `${SECRET}-${Math.random()}` }, ttlMs: 60_000 })
          return `${card}-updated`
        }, { retries: 0 })
      },
      '/refused': (ctx: Context) => void (ctx.session.card = new Map([['pan', SECRET]])),
    })
    const browser = new Client(capture.running.url)
    await browser.get('/seed')
    const id = browser.jar.get('koa.sid') as string
    await withConsole(capture.texts, async () => {
      const big = await browser.get('/big')
      assert.equal(big.status, 500)
      const race = await browser.get('/race')
      assert.equal(race.status, 409)
      assert.equal(race.body, 'Session key "card" was changed by another request; nothing was written. Retry.')
      const update = await browser.get('/update')
      await racing
      assert.equal(update.status, 409)
      assert.ok(!update.body.includes(SECRET) && !update.body.includes(id))
      assert.equal((await browser.get('/refused')).status, 500)
    })
    assert.equal(capture.texts.filter((text) => /SessionTooLargeError|SessionConflictError|SessionValueError/.test(text)).length >= 4, true, capture.texts.join('\n'))
    assertClean(capture, [id], 'too large / conflict / update / refused value')
  })
})

describe('absoluteMaxAge', () => {
  it('ends a session kept busy with writes and increments every 40 ms, at its absolute lifetime', async () => {
    const ABSOLUTE = 700
    const store = new MemoryStore()
    const { client } = await harness(store, { absoluteMaxAge: ABSOLUTE, maxAge: '1h' }, {
      '/seed': (ctx) => void (ctx.session.seed = 'first'),
      '/write': (ctx) => void (ctx.session.w = Date.now()),
      '/count': async (ctx) => ({ n: await ctx.session.increment('n') }),
      '/read': (ctx) => ({ id: ctx.sessionId ?? null, seed: ctx.session.seed ?? null }),
    })
    const created = Date.now()
    const seeded = await client.get('/seed')
    // A client that ignores the cookie's expiry (sent to the second, so a sub-second one may lapse
    // on arrival: read it from the reply, not the jar) and keeps sending it until given another.
    const kept = seeded.setCookies.map((line) => /^([^=]+)=([^;]*)/.exec(line)?.slice(1, 3) as [string, string])
    const first = kept.find(([name]) => name === 'koa.sid')?.[1] as string
    assert.ok(first)
    const keep = () => {
      if (!client.jar.has('koa.sid')) for (const [name, value] of kept) client.jar.set(name, value)
    }
    const timeline: Array<{ at: number; seed: string | null; id: string | null }> = []
    for (let i = 0; Date.now() - created < ABSOLUTE + 600; i++) {
      keep()
      await client.get(i % 2 === 0 ? '/write' : '/count')
      keep()
      const { seed, id } = (await client.get('/read')).json as { seed: string | null; id: string | null }
      timeline.push({ at: Date.now() - created, seed, id })
      await sleep(40)
    }
    const ended = timeline.find((point) => point.seed === null)
    assert.ok(ended, `the session outlived absoluteMaxAge: ${JSON.stringify(timeline.slice(-3))}`)
    assert.ok(ended.at >= ABSOLUTE - 50, `ended early, at ${ended.at} ms`)
    assert.ok(timeline.filter((point) => point.at < ABSOLUTE - 50).every((point) => point.seed === 'first'), 'ended before its time')
    // A point is stamped when its answer arrives, so a read that loaded just in time may land a little late.
    assert.ok(timeline.filter((point) => point.at > ABSOLUTE + 300).every((point) => point.seed === null), 'came back after ending')
    // Whatever id the client sends afterwards, the first one is never served again.
    assert.ok(timeline.filter((point) => point.seed === null).every((point) => point.id !== first))
    assert.equal(await store.get(`koa:sess:${first}`), undefined)
  })
})
