/**
 * The contenders of `npm run bench`: what the orchestrator needs to know about each (bench/app.ts
 * builds them). Every contender serves the same routes on the same ~1 KB session.
 */

export interface Contender {
  /** What `node bench/app.ts <id>` is given. */
  id: string
  /** Its name in the results. */
  name: string
  /** Whether its sessions live in Redis (then they are checked there and its commands counted). */
  redis: boolean
  /** Whether it is this library (its targets apply, and it must lose no update). */
  ours: boolean
  /** A row that shows what an option costs (compared with its plain row, not judged against the targets). */
  option?: true
  /**
   * A reference, not a session library: bare Koa plus only what these routes cannot avoid, timed on
   * them alone and not judged; it shows how close to its floor a figure is.
   */
  reference?: readonly Route[]
  /** The Redis key of the session whose cookies are `cookies` (name → value), to check it is stored. */
  redisKey?: (cookies: Map<string, string>) => string | undefined
}

const ourKey = (cookies: Map<string, string>): string | undefined => {
  const id = cookies.get('koa.sid')
  return id === undefined ? undefined : `koa:sess:${id}`
}

export const CONTENDERS: readonly Contender[] = [
  { id: 'bare', name: 'bare Koa (no sessions)', redis: false, ours: false },
  { id: 'memory', name: 'ours, MemoryStore', redis: false, ours: true },
  { id: 'redis', name: 'ours, RedisStore (ioredis)', redis: true, ours: true, redisKey: ourKey },
  { id: 'redis-lazy', name: 'ours, RedisStore (ioredis), lazy: true', redis: true, ours: true, redisKey: ourKey },
  { id: 'node-redis', name: 'ours, RedisStore (node-redis)', redis: true, ours: true, redisKey: ourKey },
  { id: 'node-redis-reject', name: "ours, RedisStore (node-redis), conflicts: 'reject'", redis: true, ours: true, option: true, redisKey: ourKey },
  { id: 'node-redis-wait', name: 'ours, RedisStore (node-redis), waitReplicas: 1', redis: true, ours: true, option: true, redisKey: ourKey },
  { id: 'koa-session-cookie', name: 'koa-session, cookie store', redis: false, ours: false },
  // koa-session keeps the external key (a UUID) in its cookie and uses it as the Redis key.
  { id: 'koa-session-redis', name: 'koa-session + koa-redis', redis: true, ours: false, redisKey: (c) => c.get('koa.sess') },
  {
    id: 'generic-session-redis',
    name: 'koa-generic-session + koa-redis',
    redis: true,
    ours: false,
    redisKey: (c) => (c.get('koa.sid') === undefined ? undefined : `koa:sess:${c.get('koa.sid')}`),
  },
  // What any /read on MemoryStore must do: find the id cookie, trust its signature, look the session up, decode the counter.
  { id: 'bare-lookup', name: 'reference: bare Koa + id cookies checked + 1 Map lookup', redis: false, ours: false, reference: ['/read'] },
  // What the SPEC makes every write send: both id cookies again, with the expiry the write moved.
  { id: 'bare-cookies', name: 'reference: bare Koa + re-sending the 2 id cookies', redis: false, ours: false, reference: ['/write'] },
  // One read of a ~1 KB hash on ioredis, RedisStore's default client, and the counter decoded.
  { id: 'bare-hgetall', name: 'reference: bare Koa + 1 HGETALL on ioredis', redis: true, ours: false, reference: ['/read'], redisKey: ourKey },
]

export const BARE = CONTENDERS[0] as Contender

/** Whether a contender keeps sessions: bare Koa and the references do not. */
export const keepsSessions = (contender: Contender): boolean => contender !== BARE && contender.reference === undefined

export const ROUTES = ['/untouched', '/read', '/write'] as const
export type Route = (typeof ROUTES)[number]

/** Sessions logged in per contender; wrk picks one of them at random for every request. */
export const SESSIONS = 1000

/** The seeded session number `i`: a user id, a counter (= i), and 20 short preference fields (~1 KB as JSON). */
export function sessionData(i: number): Record<string, string | number> {
  const data: Record<string, string | number> = { user: `user-${String(i).padStart(6, '0')}`, counter: i }
  for (let p = 0; p < 20; p++) data[`pref${String(p).padStart(2, '0')}`] = `value-${p}-of-user-${i}-abcdefghijklmno`
  return data
}
