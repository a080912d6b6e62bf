/**
 * Fuzzing with fast-check, bounded so it runs in the normal suite (a failure prints the seed and
 * the shrunk counterexample to replay it):
 * - arbitrary Cookie headers and `x-session-id` headers, sent byte for byte over a socket: never a
 *   5xx, never a store lookup unless a genuine signed cookie came along, never another session's data;
 * - arbitrary session values on MemoryStore and RedisStore (ioredis and node-redis): each either
 *   reads back exactly as JSON represents it, or is refused at assignment with a TypeError naming the key.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import Cookies from 'cookies'
import fc from 'fast-check'
import Keygrip from 'keygrip'
import type { Context } from 'koa'
import { createClient } from 'redis'
import { ID_PATTERN } from '../../src/ids.js'
import { headerTransport, MemoryStore, session, type SessionOptions } from '../../src/index.js'
import type { Store } from '../../src/store.js'
import { RedisStore } from '../../src/stores/redis/index.js'
import { asJson, cookieHeaders, keyAllowed, malformedId, sessionKey, sessionValue, storable, type CookieMaterial } from '../helpers/arbitraries.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import { rawGet, type RawReply } from '../helpers/raw-http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'

const RUNS = Number(process.env.FUZZ_RUNS ?? 300)
const KEYS = ['test-key-newest', 'test-key-older'] // koaApp()'s keys

/**
 * The session id that Koa's own cookie parser (pillarjs/cookies, as koa-session reads cookies)
 * accepts as genuinely signed in these Cookie header lines, if any. Pieces of a genuine pair can
 * add up to one: an unbalanced quote that the next separator's space closes (`"<sig> ; ...`)
 * unquotes to the genuine signature. Sending it takes the genuine signature, so it is no forgery.
 */
function genuineIn(lines: string[]): string | undefined {
  // Node joins repeated Cookie headers with '; '.
  const req = { headers: { cookie: lines.join('; ') } }
  const res = { getHeader: () => undefined, setHeader: () => undefined }
  const id = new Cookies(req as never, res as never, { keys: new Keygrip(KEYS), secure: false }).get('koa.sid', { signed: true })
  return id !== undefined && ID_PATTERN.test(id) ? id : undefined
}

/** A store that records the store key of every operation that reaches it. */
function watched(inner: Store): { store: Store; keys: string[] } {
  const keys: string[] = []
  const store: Store = {
    get: (id) => (keys.push(id), inner.get(id)),
    apply: (id, patch) => (keys.push(id), inner.apply(id, patch)),
    increment: (id, key, by, ttl) => (keys.push(id), inner.increment(id, key, by, ttl)),
    touch: (id, ttl) => (keys.push(id), inner.touch(id, ttl)),
    destroy: (id) => (keys.push(id), inner.destroy(id)),
  }
  return { store, keys }
}

interface FuzzApp {
  running: Running
  storeKeys: string[]
  errors: Error[]
}

/** `/login?user=` stores a user and a secret; `/me` shows the id and data the request was given. */
async function fuzzApp(options: SessionOptions): Promise<FuzzApp> {
  const { store, keys } = watched(new MemoryStore())
  const app = koaApp()
  const errors: Error[] = []
  app.on('error', (error: Error) => errors.push(error))
  app.use(session({ ...options, store }))
  app.use(async (ctx: Context) => {
    if (ctx.path === '/login') {
      ctx.session.user = ctx.query.user
      ctx.session.secret = `secret-of-${String(ctx.query.user)}-${randomBytes(8).toString('hex')}`
      ctx.body = { id: ctx.sessionId }
    } else if (ctx.path === '/me') {
      ctx.body = { id: ctx.sessionId ?? null, data: ctx.session.toJSON() }
    }
  })
  return { running: await listen(app), storeKeys: keys, errors }
}

/** Tallies answers by status, to show the fuzz mostly reached the app rather than the HTTP parser. */
class Tally {
  readonly counts = new Map<number, number>()
  add(reply: RawReply): void {
    this.counts.set(reply.status, (this.counts.get(reply.status) ?? 0) + 1)
  }
  get total(): number {
    return [...this.counts.values()].reduce((sum, n) => sum + n, 0)
  }
  share(status: number): number {
    return (this.counts.get(status) ?? 0) / this.total
  }
  toString(): string {
    return [...this.counts].sort(([a], [b]) => a - b).map(([status, n]) => `${n}× ${status}`).join(', ')
  }
}

function assertNoServerError(reply: RawReply, fuzz: FuzzApp, what: unknown): void {
  assert.ok(reply.status < 500, `answered ${reply.status} to ${JSON.stringify(what)}: ${reply.body} ${fuzz.errors.at(-1)?.stack ?? ''}`)
}

describe('fuzzing the Cookie header', () => {
  let fuzz: FuzzApp
  let victim: { id: string; signature: string; secret: string }
  let attacker: { id: string; signature: string; secret: string }
  let material: CookieMaterial

  before(async () => {
    fuzz = await fuzzApp({})
    const login = async (user: string) => {
      const client = new Client(fuzz.running.url)
      await client.get(`/login?user=${user}`)
      const me = (await client.get('/me')).json as { id: string; data: { secret: string } }
      return { id: me.id, signature: client.jar.get('koa.sid.sig') as string, secret: me.data.secret }
    }
    victim = await login('victim')
    attacker = await login('attacker')
    const newest = new Keygrip(KEYS.slice(0, 1))
    material = {
      name: 'koa.sid',
      ids: [victim.id, attacker.id],
      signatures: [victim.signature, attacker.signature, new Keygrip(KEYS.slice(1)).sign(`koa.sid=${victim.id}`)],
      sign: (data) => newest.sign(data),
    }
  })
  after(() => fuzz?.running.close())

  it(`never answers 5xx and never reaches the store without a genuine signed cookie (${RUNS} runs)`, async (t) => {
    const tally = new Tally()
    await fc.assert(
      fc.asyncProperty(cookieHeaders(material), async (lines) => {
        fuzz.storeKeys.length = 0
        const reply = await rawGet(fuzz.running.url, '/me', lines.map((line) => ['Cookie', line]))
        tally.add(reply)
        assertNoServerError(reply, fuzz, lines)
        const genuine = genuineIn(lines)
        // Only a request that reached the app (200) can reach the store: Node's HTTP parser answers
        // 400 or 431 by itself (a control byte anywhere in the header, headers too large).
        if (genuine !== undefined && reply.status === 200) {
          assert.deepEqual(fuzz.storeKeys, [`koa:sess:${genuine}`], `a genuine pair in ${JSON.stringify(lines)}`)
          return
        }
        assert.deepEqual(fuzz.storeKeys, [], `the store was reached for ${JSON.stringify(lines)}`)
        if (reply.status === 200) assert.deepEqual(JSON.parse(reply.body), { id: null, data: {} })
        for (const line of reply.headers.get('set-cookie') ?? []) {
          assert.ok(!line.includes(victim.id) && !line.includes(attacker.id), `an id was sent back: ${line}`)
        }
      }),
      { numRuns: RUNS },
    )
    // Most headers must reach the app, or the property says little (400/431: refused by Node's parser).
    assert.ok(tally.share(200) > 0.7, `answers: ${tally}`)
    t.diagnostic(`answers: ${tally}`)
  })

  it(`with the fuzzer's own genuine cookie mixed in, shows only its own session, never the victim's (${RUNS} runs)`, async (t) => {
    const tally = new Tally()
    let own = 0
    await fc.assert(
      fc.asyncProperty(cookieHeaders({ ...material, own: attacker }), async (lines) => {
        fuzz.storeKeys.length = 0
        const reply = await rawGet(fuzz.running.url, '/me', lines.map((line) => ['Cookie', line]))
        tally.add(reply)
        assertNoServerError(reply, fuzz, lines)
        // The victim's own genuine pair, put together from pieces (see genuineIn), is the victim's credential.
        if (genuineIn(lines) === victim.id) return
        for (const key of fuzz.storeKeys) assert.equal(key, `koa:sess:${attacker.id}`, `the store was asked for ${key}`)
        assert.ok(!reply.body.includes(victim.id) && !reply.body.includes(victim.secret), `victim data for ${JSON.stringify(lines)}`)
        if (reply.status !== 200) return
        const body = JSON.parse(reply.body) as { id: string | null; data: Record<string, unknown> }
        if (body.id === null) assert.deepEqual(body.data, {})
        else {
          own++
          assert.deepEqual(body, { id: attacker.id, data: { user: 'attacker', secret: attacker.secret } })
        }
      }),
      { numRuns: RUNS },
    )
    assert.ok(own > 0, 'the generator never sent the genuine cookie first: the property checked nothing about it')
    t.diagnostic(`answers: ${tally}; ${own} read the fuzzer's own session`)
  })
})

describe('fuzzing the x-session-id header (headerTransport)', () => {
  let fuzz: FuzzApp
  let victim: { id: string; secret: string }
  before(async () => {
    fuzz = await fuzzApp({ transport: headerTransport() })
    const client = new Client(fuzz.running.url)
    const id = ((await client.get('/login?user=victim')).json as { id: string }).id
    const me = (await client.get('/me', { 'x-session-id': id })).json as { data: { secret: string } }
    victim = { id, secret: me.data.secret }
  })
  after(() => fuzz?.running.close())

  it(`never answers 5xx, never reaches the store, never shows a session for a malformed id (${RUNS} runs)`, async (t) => {
    const tally = new Tally()
    await fc.assert(
      fc.asyncProperty(fc.array(malformedId(), { minLength: 1, maxLength: 2 }), async (values) => {
        fuzz.storeKeys.length = 0
        const reply = await rawGet(fuzz.running.url, '/me', values.map((value) => ['x-session-id', value]))
        tally.add(reply)
        assertNoServerError(reply, fuzz, values)
        assert.deepEqual(fuzz.storeKeys, [], `the store was reached for ${JSON.stringify(values)}`)
        assert.ok(!reply.body.includes(victim.secret))
        if (reply.status === 200) {
          assert.deepEqual(JSON.parse(reply.body), { id: null, data: {} })
          assert.equal(reply.headers.get('x-session-id'), undefined)
        }
      }),
      { numRuns: RUNS },
    )
    assert.ok(tally.share(200) > 0.7, `answers: ${tally}`)
    t.diagnostic(`answers: ${tally}`)
  })

  it('the same id, well formed, is looked up and read (the property above is not vacuous)', async () => {
    fuzz.storeKeys.length = 0
    const reply = await rawGet(fuzz.running.url, '/me', [['x-session-id', ` ${victim.id}\t`]])
    assert.deepEqual(JSON.parse(reply.body), { id: victim.id, data: { user: 'victim', secret: victim.secret } })
    assert.deepEqual(fuzz.storeKeys, [`koa:sess:${victim.id}`])
  })
})

describe('fuzzing session values', () => {
  let redis: RedisServer
  const closers: Array<() => Promise<void>> = []
  before(async () => {
    redis = await startRedis()
  })
  after(async () => {
    for (const close of closers.splice(0)) await close()
    await redis?.close()
  })

  const STORES: Array<{ name: string; open(): Promise<Store> }> = [
    { name: 'MemoryStore', open: async () => new MemoryStore() },
    {
      name: 'RedisStore on ioredis',
      async open() {
        const store = new RedisStore({ url: redis.url })
        closers.push(() => store.close())
        return store
      },
    },
    {
      name: 'RedisStore on node-redis',
      async open() {
        const client = await createClient({ url: redis.url }).on('error', () => undefined).connect()
        closers.push(async () => client.destroy())
        return new RedisStore({ client })
      },
    },
  ]

  for (const kind of STORES) {
    it(`${kind.name}: every value reads back as its JSON form, or is refused at assignment with a TypeError naming the key (${Math.ceil(RUNS / 2)} runs)`, async (t) => {
      const store = await kind.open()
      let given: { key: string; value: unknown } = { key: 'a', value: 1 }
      let thrown: unknown
      let read: Record<string, unknown> = {}
      const app = koaApp()
      app.use(session({ store }))
      app.use(async (ctx: Context) => {
        if (ctx.path === '/put') {
          ctx.session.marker = 1 // so the session exists whatever happens to the value
          thrown = undefined
          try {
            ctx.session[given.key] = given.value
          } catch (error) {
            thrown = error
          }
          ctx.body = 'ok'
        } else if (ctx.path === '/get') {
          read = ctx.session.toJSON()
          ctx.body = 'ok'
        }
      })
      const running = await listen(app)
      closers.push(() => running.close())
      const outcomes = { stored: 0, refused: 0, removed: 0 }
      await fc.assert(
        fc.asyncProperty(sessionKey().filter((key) => key !== 'marker'), sessionValue(), async (key, value) => {
          given = { key, value }
          const client = new Client(running.url)
          assert.equal((await client.get('/put')).status, 200)
          assert.equal((await client.get('/get')).status, 200)
          if (!keyAllowed(key) || (value !== undefined && !storable(value))) {
            assert.ok(thrown instanceof TypeError, `${String(key)} = ${fc.stringify(value)} was not refused (read back ${fc.stringify(read)})`)
            assert.equal((thrown as TypeError & { key?: unknown }).key, key, `the error does not name the key: ${thrown.message}`)
            assert.ok(thrown.message.includes(`"${key}"`), thrown.message)
            assert.deepEqual(read, { marker: 1 }, 'a refused value left something in the store')
            outcomes.refused++
          } else {
            assert.equal(thrown, undefined, `${fc.stringify(value)} was refused: ${String(thrown)}`)
            const expected = value === undefined ? { marker: 1 } : { marker: 1, [key]: asJson(value) }
            assert.deepStrictEqual(read, expected)
            if (value === undefined) outcomes.removed++
            else outcomes.stored++
          }
        }),
        { numRuns: Math.ceil(RUNS / 2) },
      )
      assert.ok(outcomes.stored > 0 && outcomes.refused > 0)
      t.diagnostic(`${outcomes.stored} stored and read back, ${outcomes.refused} refused, ${outcomes.removed} undefined (no key)`)
    })
  }
})
