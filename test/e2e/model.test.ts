/**
 * Sequences of requests, each a random list of session operations (reads, assignments, deletes,
 * changes deep inside values, `ctx.session = {...}`, the explicit writes, save, reload,
 * regenerate, destroy), run through a real Koa server against a model of what the session must
 * hold: after every operation the request's view of the data, and after every request what a new
 * request reads back from the store, must be the model's. On MemoryStore and on RedisStore (a real
 * redis-server); eager, lazy (reads refused until loaded) and with conflicts: 'reject' (one client
 * alone never conflicts with itself). Then, the same way: the per-user index against logins,
 * logouts and destroyByUser; requests in flight together on one session; and, with the clock moved
 * forward, the id cookie's expiry against the store's. A failure prints the seed and the shrunk
 * sequence.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type { Context } from 'koa'
import { MemoryStore, session, type SessionOptions } from '../../src/index.js'
import type { Store } from '../../src/store.js'
import { RedisStore } from '../../src/stores/redis/index.js'
import { asJson } from '../helpers/arbitraries.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'

const RUNS = Number(process.env.FUZZ_RUNS ?? 300) / 3

type Data = Record<string, unknown>
type Op =
  | { op: 'read'; key: string }
  | { op: 'assign'; key: string; value: unknown }
  | { op: 'delete'; key: string }
  | { op: 'push'; key: string; value: unknown }
  | { op: 'nest'; key: string; name: string; value: unknown }
  | { op: 'replace'; data: Data }
  | { op: 'setNow'; key: string; value: unknown }
  | { op: 'unsetNow'; key: string }
  | { op: 'increment'; key: string; by: number }
  | { op: 'save' }
  | { op: 'reload' }
  | { op: 'regenerate'; keep: boolean }
  | { op: 'load' }
  | { op: 'destroy' }

/** What the server saw after one operation: the value read or returned, an error's name, the data. */
interface Seen {
  value?: unknown
  error?: string
  data: Data | null | 'unloaded'
}

const KEYS = ['a', 'b', 'n']
const key = fc.constantFrom(...KEYS)
// Small values, so a failure reads easily: what values may hold is fuzzed in fuzz.test.ts.
const leaf = fc.oneof(fc.integer({ min: -3, max: 9 }), fc.constantFrom(1.5, 's', 't', true, false, null))
const value = fc.oneof(leaf, fc.array(leaf, { maxLength: 3 }), fc.dictionary(fc.constantFrom('x', 'y'), leaf, { maxKeys: 2 }))
// A new empty array or object each time (fc.constant would hand out one object to every run).
const empty = fc.oneof(fc.constant(0).map(() => []), fc.constant(0).map(() => ({})))
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('read' as const), key }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant('assign' as const), key, value: fc.oneof(value, empty) }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('delete' as const), key }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('push' as const), key, value }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('nest' as const), key, name: fc.constantFrom('x', 'y'), value }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('replace' as const), data: fc.dictionary(key, value, { maxKeys: 2 }) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('setNow' as const), key, value }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('unsetNow' as const), key }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('increment' as const), key, by: fc.integer({ min: -5, max: 5 }) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('save' as const) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('reload' as const) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('regenerate' as const), keep: fc.boolean() }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('load' as const) }), weight: 1 },
)
/** A request: a few operations, now and then ending with a destroy. */
const request = fc.tuple(fc.array(op, { minLength: 1, maxLength: 5 }), fc.nat(9)).map(([ops, roll]) =>
  roll === 0 ? [...ops, { op: 'destroy' } as Op] : ops,
)

const isObject = (v: unknown): v is Data => typeof v === 'object' && v !== null && !Array.isArray(v)
/** A value as it is now (what the session hands out is live, and later operations may change it). */
const snapshot = (v: unknown): unknown => (v === undefined ? undefined : asJson(v))
const numberOrAbsent = (v: unknown): boolean => v === undefined || typeof v === 'number'

/** The server side: runs the operations on ctx.session and reports what it saw after each. */
async function runOps(ctx: Context, ops: Op[]): Promise<Seen[]> {
  const seen: Seen[] = []
  for (const step of ops) {
    const s = ctx.session
    let result: Omit<Seen, 'data'> = {}
    try {
      switch (step.op) {
        case 'read': result = { value: snapshot(s[step.key]) }; break
        case 'assign': s[step.key] = step.value; break
        case 'delete': delete s[step.key]; break
        case 'push': if (Array.isArray(s[step.key])) s[step.key].push(step.value); break
        case 'nest': if (isObject(s[step.key])) s[step.key][step.name] = step.value; break
        case 'replace': ctx.session = step.data; break
        case 'setNow': await s.set(step.key, step.value); break
        case 'unsetNow': await s.unset(step.key); break
        case 'increment': result = { value: await s.increment(step.key, step.by) }; break
        case 'save': await s.save(); break
        case 'reload': await s.reload(); break
        case 'regenerate': await s.regenerate({ keep: step.keep }); break
        case 'load': await ctx.loadSession(); break
        case 'destroy': ctx.session = null; break
      }
    } catch (error) {
      result = { error: (error as Error).name }
    }
    seen.push({ ...result, data: dataNow(ctx) })
  }
  return seen
}

/** The data as the request sees it now; `'unloaded'` while a lazy session cannot be read. */
function dataNow(ctx: Context): Data | null | 'unloaded' {
  if (ctx.session === null) return null
  try {
    return asJson(ctx.session.toJSON()) as Data
  } catch (error) {
    if ((error as Error).name === 'SessionStateError') return 'unloaded'
    throw error
  }
}

/**
 * The model of one client's session. `stored`: what the store holds (`exists`: whether it holds the
 * session at all). `view`: what the request would see once loaded, stored data plus its unsaved
 * changes; `pending`: the keys of those changes. A lazy request reads only after it loaded, or
 * replaced the data, or the keys it set itself (`known`).
 */
interface Model {
  stored: Data
  exists: boolean
  view: Data
  pending: Set<string>
  loaded: boolean
  replaced: boolean
  known: Set<string>
}

/** The model at the start of a request. */
const requestStart = (model: Model, lazy: boolean): Model => ({
  ...model,
  view: structuredClone(model.stored),
  pending: new Set(),
  loaded: !lazy,
  replaced: false,
  known: new Set(),
})

const readable = (model: Model, key: string): boolean => model.loaded || model.replaced || model.known.has(key)

/** Applies `step` to the model; returns what the server must report for it. */
function apply(model: Model, step: Op): Omit<Seen, 'data'> {
  const { view } = model
  const change = (key: string): void => {
    model.pending.add(key)
    model.known.add(key)
  }
  /** An explicit write of `key`: the store has it now, and nothing of it is pending. */
  const written = (key: string, value: unknown): void => {
    if (value === undefined) delete view[key]
    else view[key] = structuredClone(value)
    if (model.exists || value !== undefined) {
      if (value === undefined) delete model.stored[key]
      else model.stored[key] = structuredClone(value)
      model.exists = true
    }
    model.pending.delete(key)
    model.known.add(key)
  }
  const writeAll = (): void => {
    model.stored = structuredClone(view)
    model.exists = true
    model.pending.clear()
  }
  switch (step.op) {
    case 'read':
      return readable(model, step.key) ? { value: view[step.key] } : { error: 'SessionStateError' }
    case 'assign':
      view[step.key] = structuredClone(step.value)
      change(step.key)
      return {}
    case 'delete':
      delete view[step.key]
      change(step.key)
      return {}
    case 'push':
    case 'nest': {
      if (!readable(model, step.key)) return { error: 'SessionStateError' }
      const target = view[step.key]
      if (step.op === 'push' && Array.isArray(target)) target.push(structuredClone(step.value))
      else if (step.op === 'nest' && isObject(target)) target[step.name] = structuredClone(step.value)
      else return {}
      model.pending.add(step.key)
      return {}
    }
    case 'replace':
      for (const key of [...Object.keys(view), ...Object.keys(step.data)]) model.pending.add(key)
      model.view = structuredClone(step.data)
      if (!model.loaded) model.replaced = true
      return {}
    case 'setNow':
      written(step.key, step.value)
      return {}
    case 'unsetNow':
      written(step.key, undefined)
      return {}
    case 'increment': {
      // The request's own value is checked when it knows it; the store adds to what it holds.
      const current = readable(model, step.key) ? view[step.key] : undefined
      if (!numberOrAbsent(current)) return { error: 'SessionValueError' }
      // A stored session is loaded first: the increment moves its expiry, which must honour its bookkeeping.
      if (model.exists) model.loaded = true
      if (model.exists && !numberOrAbsent(model.stored[step.key])) return { error: 'SessionValueError' }
      const sum = (((model.exists ? model.stored[step.key] : current) as number | undefined) ?? 0) + step.by
      written(step.key, sum)
      return { value: sum }
    }
    case 'save':
      if (model.replaced) model.loaded = true
      // A stored session that nothing changed is saved all the same, and one not loaded is loaded for it.
      if (model.exists && model.pending.size === 0) model.loaded = true
      if (model.pending.size > 0 || !model.exists) writeAll()
      return {}
    case 'regenerate':
      model.loaded = true
      if (step.keep) {
        writeAll()
        return {}
      }
      // A new, empty session, not stored until something is written to it.
      model.view = {}
      model.stored = {}
      model.exists = false
      model.pending.clear()
      return {}
    case 'reload':
      model.view = structuredClone(model.stored)
      model.pending.clear()
      model.known.clear()
      model.replaced = false
      model.loaded = true
      return {}
    case 'load':
      model.loaded = true
      return {}
    case 'destroy':
      model.view = {}
      model.stored = {}
      model.exists = false
      model.pending.clear()
      return {}
  }
}

/**
 * The end of the request: whatever it changed is written. Changes that leave a new session as it
 * was (a key removed that it lacks, added and removed again) create nothing.
 */
function requestEnd(model: Model, destroyed: boolean): void {
  const changes = [...model.pending].some((key) => JSON.stringify(model.view[key]) !== JSON.stringify(model.stored[key]))
  if (!destroyed && model.pending.size > 0 && (model.exists || changes)) {
    model.stored = structuredClone(model.view)
    model.exists = true
  }
}

interface Kind {
  name: string
  open(): Promise<Store>
}

// One redis-server for the whole file; servers and stores opened by the tests close at its end.
let redis: RedisServer
const closers: (() => Promise<void>)[] = []
before(async () => {
  redis = await startRedis()
})
after(async () => {
  for (const close of closers.splice(0).reverse()) await close()
  await redis.stop()
})

const kinds: Kind[] = [
  { name: 'MemoryStore', open: async () => new MemoryStore() },
  {
    name: 'RedisStore',
    async open() {
      const store = new RedisStore({ url: redis.url })
      closers.push(() => store.close())
      return store
    },
  },
]

describe('Sequences of session operations agree with a model of the session', () => {
  const modes: { name: string; options: SessionOptions }[] = [
    { name: 'eager', options: {} },
    { name: 'lazy', options: { lazy: true } },
    { name: "conflicts: 'reject'", options: { conflicts: 'reject' } },
  ]

  for (const kind of kinds) {
    for (const mode of modes) {
      it(`${kind.name}, ${mode.name}: every operation's view and every request's stored data are the model's (${RUNS} runs)`, async () => {
        const app = koaApp()
        app.use(session({ ...mode.options, store: await kind.open() }))
        const lazy = mode.options.lazy === true
        let ops: Op[] = []
        app.use(async (ctx) => {
          if (ctx.path === '/dump') await ctx.loadSession()
          ctx.body = ctx.path === '/ops' ? await runOps(ctx, ops) : (ctx.session?.toJSON() ?? null)
        })
        const running: Running = await listen(app)
        closers.push(() => running.close())
        await fc.assert(
          fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 4 }), async (requests) => {
            const client = new Client(running.url)
            let model: Model = { stored: {}, exists: false, view: {}, pending: new Set(), loaded: true, replaced: false, known: new Set() }
            for (const [index, sent] of requests.entries()) {
              ops = structuredClone(sent)
              model = requestStart(model, lazy)
              const reply = await client.get('/ops')
              assert.equal(reply.status, 200, `request ${index} failed: ${reply.body}`)
              const seen = reply.json as Seen[]
              for (const [at, step] of sent.entries()) {
                const expected = apply(model, step)
                const where = `request ${index}, operation ${at} (${JSON.stringify(step)})`
                assert.deepEqual(asJson({ ...seen[at], data: null }), asJson({ ...expected, data: null }), where)
                const data = step.op === 'destroy' ? null : model.loaded || model.replaced ? model.view : 'unloaded'
                assert.deepEqual(seen[at]?.data, data, `${where}: the data seen`)
              }
              requestEnd(model, sent.at(-1)?.op === 'destroy')
              const read = await client.get('/dump')
              assert.deepEqual(read.json, model.stored, `after request ${index}: what a new request reads`)
            }
          }),
          { numRuns: RUNS },
        )
      })
    }
  }
})

type UserOp =
  | { op: 'write' | 'logout' | 'destroy'; client: number }
  | { op: 'login'; client: number; user: string }
  | { op: 'regenerate'; client: number; keep: boolean }
  | { op: 'destroyByUser'; user: string; except: number | undefined }

const CLIENTS = 3
const USERS = ['ann', 'bob']
/** Which of the clients makes a request (named so, not `client`, which the suites use for an HTTP client). */
const clientNumber = fc.nat(CLIENTS - 1)
const user = fc.constantFrom(...USERS)
const userOp: fc.Arbitrary<UserOp> = fc.oneof(
  fc.record({ op: fc.constantFrom('write' as const, 'logout' as const, 'destroy' as const), client: clientNumber }),
  { arbitrary: fc.record({ op: fc.constant('login' as const), client: clientNumber, user }), weight: 3 },
  fc.record({ op: fc.constant('regenerate' as const), client: clientNumber, keep: fc.boolean() }),
  fc.record({ op: fc.constant('destroyByUser' as const), user, except: fc.option(clientNumber, { nil: undefined }) }),
)

describe('Logins, logouts, regenerations and destroyByUser agree with a model of the per-user index', () => {

  for (const kind of kinds) {
    it(`${kind.name}: listByUser() shows exactly each user's live sessions after every step (${RUNS} runs)`, async () => {
      const app = koaApp()
      const sessions = session({ store: await kind.open() })
      app.use(sessions)
      app.use(async (ctx) => {
        const s = ctx.session
        switch (ctx.path) {
          case '/write': s.visits = (s.visits ?? 0) + 1; break
          case '/login': await s.login(String(ctx.query.user)); break
          case '/logout': await s.logout(); break
          case '/destroy': ctx.session = null; break
          case '/regenerate': await s.regenerate({ keep: ctx.query.keep === 'true' }); break
        }
        ctx.body = { id: ctx.sessionId ?? null }
      })
      const running: Running = await listen(app)
      closers.push(() => running.close())
      await fc.assert(
        fc.asyncProperty(fc.array(userOp, { minLength: 1, maxLength: 12 }), async (steps) => {
          // Each run its own users, so runs never see each other's sessions.
          const run = Math.random().toString(36).slice(2)
          const userId = (name: string): string => `${name}-${run}`
          const clients = Array.from({ length: CLIENTS }, () => ({ http: new Client(running.url), id: undefined as string | undefined, user: undefined as string | undefined }))
          for (const [at, step] of steps.entries()) {
            if (step.op === 'destroyByUser') {
              const except = step.except === undefined ? undefined : clients[step.except]?.id
              const doomed = clients.filter((c) => c.user === step.user && c.id !== undefined && c.id !== except)
              const gone = await sessions.destroyByUser(userId(step.user), { except })
              assert.deepEqual(gone.sort(), doomed.map((c) => c.id).sort(), `step ${at} (${JSON.stringify(step)}): the ids destroyed`)
              for (const c of doomed) c.id = c.user = undefined
            } else {
              const c = clients[step.client] as (typeof clients)[number]
              const query = step.op === 'login' ? `?user=${userId(step.user)}` : step.op === 'regenerate' ? `?keep=${step.keep}` : ''
              const reply = await c.http.get(`/${step.op}${query}`)
              assert.equal(reply.status, 200, `step ${at} (${JSON.stringify(step)}) failed: ${reply.body}`)
              c.id = (reply.json as { id: string | null }).id ?? undefined
              if (step.op === 'login') c.user = step.user
              else if (step.op === 'logout' || step.op === 'destroy' || (step.op === 'regenerate' && !step.keep)) c.user = undefined
              // A session that regenerate({ keep: false }) started empty is not stored, so its id names nothing yet.
              if (step.op === 'regenerate' && !step.keep) c.id = undefined
            }
            for (const name of USERS) {
              const listed = (await sessions.listByUser(userId(name))).map((s) => s.id).sort()
              const expected = clients.filter((c) => c.user === name && c.id !== undefined).map((c) => c.id).sort()
              assert.deepEqual(listed, expected, `after step ${at} (${JSON.stringify(step)}): ${name}'s sessions`)
            }
          }
        }),
        { numRuns: RUNS },
      )
    })
  }
})

/** One of several requests in flight on the same session: changes to keys of its own, and a shared counter. */
type ParallelOp =
  | { op: 'assign'; key: 'p' | 'q'; value: unknown }
  | { op: 'delete'; key: 'p' | 'q' }
  | { op: 'push'; value: unknown }
  | { op: 'increment'; by: number }
  | { op: 'save' }
  | { op: 'pause' }

const parallelOp: fc.Arbitrary<ParallelOp> = fc.oneof(
  fc.record({ op: fc.constant('assign' as const), key: fc.constantFrom('p' as const, 'q' as const), value }),
  fc.record({ op: fc.constant('delete' as const), key: fc.constantFrom('p' as const, 'q' as const) }),
  fc.record({ op: fc.constant('push' as const), value }),
  fc.record({ op: fc.constant('increment' as const), by: fc.integer({ min: 1, max: 5 }) }),
  fc.record({ op: fc.constant('save' as const) }),
  { arbitrary: fc.record({ op: fc.constant('pause' as const) }), weight: 2 },
)

describe('Requests in flight together on one session keep every change of every one of them', () => {

  for (const kind of kinds) {
    it(`${kind.name}: each request's own keys end as it left them, and the shared counter holds every increment (${RUNS} runs)`, async () => {
      const app = koaApp()
      app.use(session({ store: await kind.open() }))
      const plans = new Map<string, ParallelOp[]>()
      app.use(async (ctx) => {
        const s = ctx.session
        if (ctx.path === '/seed') s.list0 = []
        else if (ctx.path === '/dump') ctx.body = s.toJSON()
        else {
          const me = String(ctx.query.me)
          for (const step of plans.get(me) ?? []) {
            const name = (key: string): string => `${key}${me}`
            switch (step.op) {
              case 'assign': s[name(step.key)] = step.value; break
              case 'delete': delete s[name(step.key)]; break
              case 'push': (s[name('list')] ??= []).push(step.value); break
              case 'increment': await s.increment('count', step.by); break
              case 'save': await s.save(); break
              // Lets the other requests run: the interleavings the property is about.
              case 'pause': await new Promise((resolve) => setTimeout(resolve, Math.random() * 3)); break
            }
          }
          ctx.body = 'ok'
        }
      })
      const running: Running = await listen(app)
      closers.push(() => running.close())
      await fc.assert(
        fc.asyncProperty(fc.array(fc.array(parallelOp, { minLength: 1, maxLength: 5 }), { minLength: 2, maxLength: 4 }), async (requests) => {
          const client = new Client(running.url)
          await client.get('/seed')
          const expected: Data = { list0: [] }
          let count = 0
          for (const [me, ops] of requests.entries()) {
            plans.set(String(me), structuredClone(ops))
            for (const step of ops) {
              const name = (key: string): string => `${key}${me}`
              if (step.op === 'assign') expected[name(step.key)] = structuredClone(step.value)
              else if (step.op === 'delete') delete expected[name(step.key)]
              else if (step.op === 'push') ((expected[name('list')] ??= []) as unknown[]).push(structuredClone(step.value))
              else if (step.op === 'increment') count += step.by
            }
          }
          if (count > 0) expected.count = count
          const replies = await Promise.all(requests.map((_, me) => client.get(`/run?me=${me}`)))
          assert.deepEqual(replies.map((reply) => reply.status), requests.map(() => 200))
          const stored = (await client.get('/dump')).json as Data
          assert.deepEqual(stored, expected)
        }),
        { numRuns: RUNS },
      )
    })
  }
})

type ExpiryOp =
  | { op: 'read' | 'write' | 'touch' | 'save' | 'increment' | 'regenerate' }
  | { op: 'maxAge'; value: number | 'session' }

const expiryOp: fc.Arbitrary<ExpiryOp> = fc.oneof(
  fc.record({ op: fc.constantFrom('read' as const, 'write' as const, 'touch' as const, 'save' as const, 'increment' as const, 'regenerate' as const) }),
  fc.record({ op: fc.constant('maxAge' as const), value: fc.constantFrom<number | 'session'>(3_600_000, 172_800_000, 600_000, 'session') }),
)

interface IdCookie {
  value?: string | undefined
  expires?: number | undefined
}

/** The id cookie as a browser holds it after `reply`: its value and expiry (`undefined`: until the browser closes). */
function keepIdCookie(held: IdCookie, setCookies: string[]): void {
  const line = setCookies.filter((l) => l.startsWith('koa.sid=')).at(-1)
  if (line === undefined) return
  const [pair = '', ...attributes] = line.split(';').map((part) => part.trim())
  const expires = attributes.find((a) => a.toLowerCase().startsWith('expires='))
  held.value = pair.slice('koa.sid='.length)
  held.expires = expires === undefined ? undefined : Date.parse(expires.slice('expires='.length))
  if (held.value === '' || (held.expires !== undefined && held.expires <= Date.now())) held.value = held.expires = undefined
}

describe('Over time (a clock moved forward): the id cookie, the stored session and the user index agree', () => {
  const modes: { name: string; options: SessionOptions }[] = [
    { name: 'default', options: { maxAge: '1 day' } },
    { name: 'rolling', options: { maxAge: '1 day', rolling: true } },
    { name: 'renew', options: { maxAge: '1 day', renew: true } },
  ]
  const clock = { now: Date.now, skew: 0 }
  before(() => {
    Date.now = () => clock.now() + clock.skew
  })
  after(() => {
    Date.now = clock.now
  })

  // Lazy: the session is never loaded by these requests, yet its bookkeeping (the binding) must hold.
  for (const { lazy, path } of [
    { lazy: false, path: '/increment' },
    { lazy: true, path: '/increment' },
    { lazy: true, path: '/assign' },
    { lazy: true, path: '/set' },
    { lazy: true, path: '/touch' },
  ]) {
    it(`a session bound to a user and kept alive by ${path.slice(1)} alone stays in the user's index${lazy ? ' (lazy, never loaded)' : ''}`, async () => {
      const app = koaApp()
      const sessions = session({ maxAge: '1h', store: new MemoryStore(), lazy })
      app.use(sessions)
      app.use(async (ctx) => {
        if (ctx.path === '/login') await ctx.session.login('carol')
        else if (ctx.path === '/increment') await ctx.session.increment('hits')
        else if (ctx.path === '/assign') ctx.session.hits = Date.now()
        else if (ctx.path === '/set') await ctx.session.set('hits', Date.now())
        else ctx.session.touch()
        ctx.body = { id: ctx.sessionId }
      })
      const running = await listen(app)
      closers.push(() => running.close())
      const client = new Client(running.url)
      const { id } = (await client.get('/login')).json as { id: string }
      // Five hours of a request every 50 minutes: five times the session's lifetime, twice the index's at login.
      for (let hour = 0; hour < 6; hour++) {
        clock.skew += 50 * 60_000
        assert.equal((await client.get(path)).status, 200)
        assert.deepEqual((await sessions.listByUser('carol')).map((s) => s.id), [id], `after ${(hour + 1) * 50} minutes`)
      }
    })
  }

  for (const mode of modes) {
    it(`${mode.name}: after every request, the cookie's expiry is the session's, to the second (${RUNS} runs)`, async () => {
      const app = koaApp()
      // What the store holds once the request is over (with rolling, the check itself moves it).
      app.use(async (ctx, next) => {
        await next()
        const s = ctx.session
        ctx.body = { id: ctx.sessionId ?? null, expiresAt: s?.expiresAt?.getTime() ?? null, maxAge: s?.maxAge ?? null }
      })
      const store = new MemoryStore()
      app.use(session({ ...mode.options, store }))
      let ops: ExpiryOp[] = []
      app.use(async (ctx) => {
        const s = ctx.session
        if (ctx.path === '/ops') {
          for (const step of ops) {
            if (step.op === 'read') void s.visits
            else if (step.op === 'write') s.visits = (s.visits ?? 0) + 1
            else if (step.op === 'touch') s.touch()
            else if (step.op === 'save') await s.save()
            else if (step.op === 'increment') await s.increment('hits')
            else if (step.op === 'regenerate') await s.regenerate()
            else if (step.op === 'maxAge') s.maxAge = step.value
          }
        }
      })
      const running = await listen(app)
      closers.push(() => running.close())
      await fc.assert(
        // Each request comes some minutes after the one before: the clock (Date.now, which the
        // middleware, MemoryStore and the client's cookie jar all read) is moved forward.
        fc.asyncProperty(fc.array(fc.tuple(fc.array(expiryOp, { maxLength: 4 }), fc.nat(30)), { minLength: 1, maxLength: 5 }), async (requests) => {
          const client = new Client(running.url)
          const held: IdCookie = {}
          // An increment moves the store's expiry (and the cookie) without writing the expiresAt
          // bookkeeping, until the session's next write: from then on, only the store is compared.
          let bookkept = true
          for (const [index, [sent, minutesLater]] of requests.entries()) {
            if (sent.some((step) => step.op === 'increment') && !mode.options.rolling) bookkept = false
            clock.skew += minutesLater * 60_000
            ops = sent
            keepIdCookie(held, (await client.get('/ops')).setCookies)
            // A request that does nothing itself: what the store holds, and the cookie it may re-send.
            ops = []
            const check = await client.get('/check')
            keepIdCookie(held, check.setCookies)
            const stored = check.json as { id: string | null; expiresAt: number | null; maxAge: number | 'session' }
            const where = `after request ${index} (${JSON.stringify(sent)})`
            if (stored.expiresAt === null || !bookkept) continue
            assert.equal(held.value?.startsWith(stored.id ?? '?'), true, `${where}: the cookie holds ${held.value}, not the session ${stored.id}`)
            if (stored.maxAge === 'session') {
              assert.equal(held.expires, undefined, `${where}: a browser-session cookie must carry no expiry`)
            } else {
              // Cookie dates have whole seconds; the cookie's and the store's clocks were read a moment apart.
              const apart = Math.abs((held.expires ?? 0) - Math.floor(stored.expiresAt / 1000) * 1000)
              assert.ok(apart <= 1000, `${where}: the cookie expires ${new Date(held.expires ?? 0).toISOString()}, the session ${new Date(stored.expiresAt).toISOString()}`)
            }
          }
          // And the store itself: it holds the session until the cookie expires, and not after.
          if (held.value === undefined || held.expires === undefined || held.expires <= Date.now()) return
          const key = `koa:sess:${held.value}`
          clock.skew += held.expires - Date.now() - 1500
          assert.notEqual(store.getEncoded(key), undefined, 'the store dropped the session before the cookie expired')
          clock.skew += 3000
          assert.equal(store.getEncoded(key), undefined, 'the store keeps the session after the cookie expired')
        }),
        { numRuns: RUNS },
      )
    })
  }
})
