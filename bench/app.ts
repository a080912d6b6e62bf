/**
 * One contender's app, alone in its process: `node --import tsx bench/app.ts <id> <port> [redisUrl]`.
 * Prints `ready` once listening; exits on SIGTERM (through process.exit, so `--cpu-prof` writes
 * its profile).
 *
 * Routes, the same for every contender:
 *   /untouched      never uses the session
 *   /read           answers the counter
 *   /write          increments the counter with a plain `++`
 *   /login?i=N      stores seeded session N (bench/contenders.ts) and sends its cookie
 *   /race?k=K&v=V   sets one key, after awaiting 1 ms as a handler awaiting a database would
 *   /peek           answers the session as JSON
 *
 * The reference apps are bare Koa plus only what a route of a session library cannot avoid
 * (bench/contenders.ts says which); they answer the same but keep no session.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import Koa, { type Context, type Middleware } from 'koa'
// The built package, as users run it (npm run bench builds it first); typed as its sources.
const dist = (path: string): Promise<unknown> => import(new URL(`../dist/esm/${path}`, import.meta.url).href)
const { session, MemoryStore } = (await dist('index.js')) as typeof import('../src/index.js')
const { RedisStore } = (await dist('stores/redis/index.js')) as typeof import('../src/stores/redis/index.js')
import { CONTENDERS, keepsSessions, sessionData, type Contender } from './contenders.js'

type Data = Record<string, unknown> & { counter: number }

/** How a contender sets itself up, and how its handlers reach the session. */
interface Setup {
  middleware?: Middleware
  load(ctx: Context): Data | Promise<Data>
  /** A reference app's login: stores the seeded data under the id of its cookie, if it stores anything. */
  login?(id: string, data: Record<string, unknown>): Promise<void>
}

// The reference apps (bench/contenders.ts): bare Koa plus only what one route cannot avoid.

/**
 * What every write must send back (the SPEC: a write moves the expiry, so both id cookies go out
 * again with it): the request's own two cookies, with a new expiry, as ours are shaped. Nothing is
 * signed or stored; this is the least such a /write can cost.
 */
const MONTH_MS = 30 * 24 * 3600 * 1000
const ID_COOKIE = /(?:^|;) *koa\.sid=([^;]*)/
const SIG_COOKIE = /(?:^|;) *koa\.sid\.sig=([^;]*)/

/** The request's id cookie and its signature, read as ours reads them (no Cookies object). */
function idCookies(ctx: Context): { id: string | undefined; signature: string | undefined } {
  const cookie = ctx.get('cookie')
  return { id: ID_COOKIE.exec(cookie)?.[1], signature: SIG_COOKIE.exec(cookie)?.[1] }
}

/** Session data as ours stores it: each top-level value's JSON text. */
const asFields = (data: Record<string, unknown>): Record<string, string> =>
  Object.fromEntries(Object.entries(data).map(([key, value]) => [key, JSON.stringify(value)]))

const resendCookies: Middleware = async (ctx, next) => {
  await next()
  if (ctx.path !== '/write') return
  const { id, signature } = idCookies(ctx)
  const attributes = `; path=/; expires=${new Date(Date.now() + MONTH_MS).toUTCString()}; samesite=lax; httponly`
  ctx.set('Set-Cookie', [`koa.sid=${id}${attributes}`, `koa.sid.sig=${signature}${attributes}`])
}

/**
 * What any /read on an in-process store must do: find the two id cookies, trust a signature that
 * keygrip accepted before (as ours remembers them; keygrip meets each id once), look the session up
 * in a Map of JSON text per key (as MemoryStore keeps it) and decode the one key read.
 */
function lookupSession(): Setup {
  const sessions = new Map<string, Record<string, string>>()
  const verified = new Map<string, string>()
  const found = (ctx: Context): Record<string, string> | undefined => {
    const { id, signature } = idCookies(ctx)
    if (id === undefined || signature === undefined) return undefined
    if (verified.get(id) !== signature) {
      if (ctx.cookies.get('koa.sid', { signed: true }) !== id) return undefined
      verified.set(id, signature)
    }
    return sessions.get(id)
  }
  return {
    load: (ctx) => ({ counter: JSON.parse(found(ctx)?.counter ?? '0') as number }),
    async login(id, data) {
      sessions.set(id, asFields(data))
    },
  }
}

const [id = '', portArg = '', redisUrl = 'redis://127.0.0.1:6379'] = process.argv.slice(2)
const contender = CONTENDERS.find((c) => c.id === id) as Contender
const app = new Koa()
app.keys = ['k1', 'k2']

const eager = (ctx: Context): Data => (ctx as unknown as { session: Data }).session

// Each contender loads only its own packages, so a profile of one shows nothing of the others.
async function setup(): Promise<Setup> {
  switch (id) {
    case 'bare':
      return { load: () => ({ counter: 0 }) }
    case 'bare-lookup':
      return lookupSession()
    case 'bare-cookies':
      return { middleware: resendCookies, load: () => ({ counter: 0 }) }
    case 'bare-hgetall': {
      // On ioredis, as RedisStore is by default; the hash laid out as ours (JSON text per key).
      const { Redis } = await import('ioredis')
      const redis = new Redis(redisUrl)
      const counters = new WeakMap<Context, number>()
      const readHash: Middleware = async (ctx, next) => {
        if (ctx.path === '/read') {
          const reply = (await redis.call('HGETALL', `koa:sess:${idCookies(ctx).id}`)) as string[]
          counters.set(ctx, JSON.parse(reply[reply.indexOf('counter') + 1] ?? '0') as number)
        }
        await next()
      }
      return {
        middleware: readHash,
        load: (ctx) => ({ counter: counters.get(ctx) ?? 0 }),
        async login(id, data) {
          await redis.hset(`koa:sess:${id}`, asFields({ ...data, $c: Date.now(), $e: Date.now() + MONTH_MS }))
        },
      }
    }
    case 'memory':
      return { middleware: session({ store: new MemoryStore() }), load: eager }
    case 'redis':
      return { middleware: session({ store: new RedisStore({ url: redisUrl }) }), load: eager }
    case 'redis-lazy':
      return {
        middleware: session({ store: new RedisStore({ url: redisUrl }), lazy: true }),
        load: async (ctx) => (await ctx.loadSession()) as unknown as Data,
      }
    case 'node-redis':
    case 'node-redis-reject':
    case 'node-redis-wait': {
      const { createClient } = await import('redis')
      const client = createClient({ url: redisUrl })
      await client.connect()
      const store = new RedisStore(id === 'node-redis-wait' ? { client, waitReplicas: 1 } : { client })
      return { middleware: session({ store, conflicts: id === 'node-redis-reject' ? 'reject' : 'overwrite' }), load: eager }
    }
    // The peers as their READMEs show them: defaults, signed cookies, store from a URL.
    case 'koa-session-cookie': {
      const { default: koaSession } = await import('koa-session')
      return { middleware: koaSession({}, app), load: eager }
    }
    case 'koa-session-redis': {
      const [{ default: koaSession }, { default: koaRedis }] = await Promise.all([import('koa-session'), import('koa-redis')])
      return { middleware: koaSession({ store: koaRedis({ url: redisUrl }) }, app), load: eager }
    }
    case 'generic-session-redis': {
      const [{ default: genericSession }, { default: koaRedis }] = await Promise.all([import('koa-generic-session'), import('koa-redis')])
      return { middleware: genericSession({ store: koaRedis({ url: redisUrl }) }), load: eager }
    }
  }
  throw new Error(`unknown contender "${id}"`)
}

const { middleware, load, login } = await setup()
if (middleware) app.use(middleware)

app.use(async (ctx) => {
  switch (ctx.path) {
    case '/untouched':
      ctx.body = 'ok'
      return
    case '/read':
      ctx.body = String((await load(ctx)).counter)
      return
    case '/write': {
      const s = await load(ctx)
      s.counter++
      ctx.body = String(s.counter)
      return
    }
    case '/login': {
      const i = Number(ctx.query.i)
      // Bare Koa keeps no session, but its requests carry a cookie shaped like ours all the same.
      if (!keepsSessions(contender)) {
        const sid = randomBytes(16).toString('base64url')
        ctx.cookies.set('koa.sid', sid, { signed: true })
        await login?.(sid, sessionData(i))
      } else Object.assign(await load(ctx), sessionData(i))
      ctx.body = 'ok'
      return
    }
    case '/race': {
      const s = await load(ctx)
      await sleep(1)
      s[String(ctx.query.k)] = String(ctx.query.v)
      ctx.body = 'ok'
      return
    }
    case '/peek': {
      const { counter, a, b } = await load(ctx)
      ctx.body = { counter, a, b }
      return
    }
  }
  ctx.status = 404
})

const server = app.listen(Number(portArg), '127.0.0.1', () => console.log('ready'))
server.keepAliveTimeout = 60_000
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
