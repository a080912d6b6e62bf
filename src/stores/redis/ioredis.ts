/**
 * The ioredis side of RedisStore: an adapter over a `Redis` or `Cluster` (the shape RedisStore
 * needs is `RedisAdapter` in index.ts), and the connection the store opens itself from `url` or
 * options. ioredis is imported lazily, only when the store opens its own connection, so importing
 * `koa-atomic-session/redis` works with only node-redis installed.
 */
import { debuglog } from 'node:util'
import type { Script } from './scripts.js'
import type { Wait } from './wait.js'

const debug = debuglog('koa-atomic-session:redis')

/** The parts of an ioredis `Redis` or `Cluster` that RedisStore uses (ioredis 5 or later). */
export interface IoRedisClient {
  /** `'ready'` once connected; `'end'` once closed for good. */
  readonly status: string
  call(command: string, ...args: string[]): Promise<unknown>
  pexpire(key: string, milliseconds: number): Promise<unknown>
  del(key: string): Promise<unknown>
  evalsha(sha: string, numberOfKeys: number, ...keysAndArgs: string[]): Promise<unknown>
  eval(script: string, numberOfKeys: number, ...keysAndArgs: string[]): Promise<unknown>
  multi(): IoRedisTransaction
  pipeline(): unknown
  connect(): Promise<void>
  quit(): Promise<unknown>
  disconnect(): void
  once(event: 'ready' | 'end', listener: () => void): unknown
  removeListener(event: 'ready' | 'end', listener: () => void): unknown
  on(event: 'error', listener: (error: Error) => void): unknown
  on(event: 'ready', listener: () => void): unknown
}

interface IoRedisTransaction {
  hset(key: string, ...fieldsAndValues: string[]): IoRedisTransaction
  hdel(key: string, ...fields: string[]): IoRedisTransaction
  pexpire(key: string, milliseconds: number): IoRedisTransaction
  exec(): Promise<Array<[error: Error | null, result: unknown]> | null>
}

/** The parts of an ioredis `Pipeline` that `confirm` uses. */
interface IoRedisPipeline {
  call(command: string, ...args: string[]): unknown
  /** Every command goes through here; own property while `confirm` builds the pipeline. */
  sendCommand(command: { inTransaction: boolean }): unknown
  exec(): Promise<Array<[error: Error | null, result: unknown]> | null>
}

/**
 * Connection options passed through to ioredis when the store opens its own connection: every
 * ioredis `RedisOptions` key is accepted (`host`, `port`, `db`, `password`, `family`, `tls`,
 * `sentinels` + `name` for Sentinel, …). The common ones are listed for editors; the rest are
 * passed on as given.
 */
export interface IoRedisOptions {
  host?: string
  port?: number
  /** Database index. Default 0. */
  db?: number
  username?: string
  password?: string
  /** IP family: 4, 6, or 0 for either. */
  family?: number
  /** TLS options (`tls.connect` options); use `rediss://` in a URL for the defaults. */
  tls?: object
  /** Sentinel addresses; with `name`, the store finds the master through them and follows failovers. */
  sentinels?: Array<{ host: string; port: number }>
  /** The master group name known to the sentinels. */
  name?: string
  /** Any other ioredis option. */
  [ioredisOption: string]: unknown
}

/**
 * Defaults for a connection the store opens, under whatever the user gives. RedisStore sends a
 * command only once the connection is ready (waiting for that at most `timeoutMs`), so nothing
 * has to queue inside ioredis; these settings make sure nothing does:
 * - no offline queue: a command never waits in ioredis to be replayed after the store has
 *   already reported its operation failed;
 * - `maxRetriesPerRequest: 0`: commands in flight when the connection drops fail at once instead
 *   of being resent after a reconnect that may come long after the request was answered;
 * - reconnect attempts at most a second apart, so the store recovers soon after Redis returns;
 * - auto-pipelining: concurrent requests' reads share a write to the socket (measurably faster).
 */
const OWN_CONNECTION_DEFAULTS = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  retryStrategy: (attempt: number): number => Math.min(50 * 2 ** attempt, 1000),
  enableAutoPipelining: true,
}

export function isIoRedisClient(client: object): client is IoRedisClient {
  const candidate = client as Partial<Record<'hgetall' | 'multi' | 'status', unknown>>
  return typeof candidate.hgetall === 'function' && typeof candidate.multi === 'function' && typeof candidate.status === 'string'
}

/** A connection the store opened: its adapter, what went wrong with it, and how to close it. */
export interface OwnConnection {
  adapter: IoRedisAdapter
  /** The connection's latest error since it was last ready (a refused password, say). */
  lastError(): Error | undefined
  /** Why the connection was given up for good (Redis refused its database), if it was. */
  unusable(): Error | undefined
  close(graceMs: number): Promise<void>
}

/** Opens an ioredis connection from `url` and/or options; rejects with install advice without ioredis. */
export async function openIoRedis(url: string | undefined, options: Record<string, unknown>): Promise<OwnConnection> {
  let Redis: new (...args: unknown[]) => IoRedisClient
  try {
    // A variable specifier would defeat bundlers; the literal keeps ioredis optional at run time.
    const ioredis = (await import('ioredis')) as unknown as { Redis: new (...args: unknown[]) => IoRedisClient }
    Redis = ioredis.Redis
  } catch (cause) {
    throw new Error(
      'RedisStore opens its own connection with ioredis when given url or connection options, and ioredis could ' +
        'not be loaded: install it (npm install ioredis), or pass a connected node-redis client as option client',
      { cause },
    )
  }
  const settings = { ...OWN_CONNECTION_DEFAULTS, ...options }
  const client = url === undefined ? new Redis(settings) : new Redis(url, settings)
  // Connection errors reach the store's callers as rejected operations; ioredis would otherwise
  // print every reconnect failure to the console.
  let lastError: Error | undefined
  let unusable: Error | undefined
  client.on('error', (error) => {
    debug('ioredis connection error: %s', error.message)
    lastError = error
    // When SELECT fails (a db out of range), ioredis carries on in db 0: every session would be
    // written to the wrong database. The connection is given up instead.
    if ((error as { command?: { name?: string } }).command?.name === 'select') {
      unusable = error
      client.disconnect()
    }
  })
  client.on('ready', () => (lastError = undefined))
  return {
    adapter: new IoRedisAdapter(client),
    lastError: () => lastError,
    unusable: () => unusable,
    async close(graceMs) {
      if (client.status === 'ready') {
        let timer: NodeJS.Timeout | undefined
        const timeUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))
        await Promise.race([client.quit().catch(() => undefined), timeUp])
        clearTimeout(timer)
      }
      client.disconnect()
    },
  }
}

/** RedisStore's commands on an ioredis client: one round trip each. */
export class IoRedisAdapter {
  readonly #client: IoRedisClient
  #nextReady: Promise<void> | undefined

  constructor(client: IoRedisClient) {
    this.#client = client
  }

  state(): 'ready' | 'waiting' | 'closed' {
    const status = this.#client.status
    return status === 'ready' ? 'ready' : status === 'end' ? 'closed' : 'waiting'
  }

  /**
   * Resolves when the client next becomes ready, or ends for good (closed, or given up by the
   * store); one listener of each however many operations wait.
   */
  nextReady(): Promise<void> {
    // A client made with lazyConnect connects on first use; the store sends nothing before ready.
    if (this.#client.status === 'wait') this.#client.connect().catch(() => undefined)
    return (this.#nextReady ??= new Promise((resolve) => {
      const settle = (): void => {
        this.#client.removeListener('ready', settle)
        this.#client.removeListener('end', settle)
        this.#nextReady = undefined
        resolve()
      }
      this.#client.once('ready', settle)
      this.#client.once('end', settle)
    }))
  }

  hgetall(key: string): Promise<unknown> {
    // Through call() the reply stays a flat array: ioredis' own hgetall() turns it into an object
    // first (a quarter of its cost per read, measured), only for the store to copy that again.
    return this.#client.call('HGETALL', key)
  }

  async transaction(key: string, fields: string[], removed: string[], ttlMs: number): Promise<void> {
    const multi = this.#client.multi()
    if (fields.length > 0) multi.hset(key, ...fields)
    if (removed.length > 0) multi.hdel(key, ...removed)
    multi.pexpire(key, ttlMs)
    const replies = await multi.exec()
    if (replies === null) throw new Error('Redis discarded the MULTI transaction')
    for (const [error] of replies) if (error) throw error
  }

  pexpire(key: string, ttlMs: number): Promise<unknown> {
    return this.#client.pexpire(key, ttlMs)
  }

  del(key: string): Promise<unknown> {
    return this.#client.del(key)
  }

  async run(script: Script, key: string, args: string[]): Promise<unknown> {
    try {
      return await this.#client.evalsha(script.sha, 1, key, ...args)
    } catch (error) {
      // Script caches are per server and emptied by restarts and failovers: send the source once.
      if (!(error instanceof Error && error.message.startsWith('NOSCRIPT'))) throw error
      return this.#client.eval(script.source, 1, key, ...args)
    }
  }

  /**
   * The write and WAIT as one ioredis pipeline: one socket write, on the connection that serves
   * the key (on a `Cluster`, ioredis picks the node from the commands' own keys). When that node
   * answers MOVED or ASK (or the cluster is down), ioredis resends the whole pipeline to the right
   * node, but only if every command that succeeded is read-only or inside a transaction, since
   * resending any other would write twice. WAIT writes nothing, so it is marked as inside the
   * transaction (`Command#inTransaction`, as ioredis marks MULTI's own commands): the write and
   * its WAIT are redirected together. Unmarked, every write that met a migrating slot would fail
   * (the reshard test in test/failover/ shows it).
   */
  async confirm(_key: string, commands: string[][], wait: Wait): Promise<unknown[]> {
    const pipeline = this.#client.pipeline() as IoRedisPipeline
    const send = pipeline.sendCommand
    let inTransaction = false
    pipeline.sendCommand = (command) => {
      command.inTransaction = inTransaction
      return send.call(pipeline, command)
    }
    try {
      for (const [name = '', ...args] of commands) {
        // As ioredis marks its own MULTI: MULTI and what it queues are inside, EXEC is not.
        if (name === 'MULTI') inTransaction = true
        if (name === 'EXEC') inTransaction = false
        pipeline.call(name.toLowerCase(), ...args)
      }
      inTransaction = true
      pipeline.call('wait', String(wait.replicas), String(wait.timeoutMs))
    } finally {
      // Resends after a redirection go through ioredis's own method, which keeps these marks.
      delete (pipeline as Partial<IoRedisPipeline>).sendCommand
    }
    const results = await pipeline.exec()
    if (results === null) throw new Error('Redis discarded the pipeline')
    // EXECABORT only says that an earlier command in the transaction failed: report that one.
    const failed = results.find(([error]) => error !== null && !error.message.startsWith('EXECABORT')) ?? results.find(([error]) => error !== null)
    if (failed) throw failed[0]
    return results.map(([, result]) => result)
  }

  cannotConfirm(): string | undefined {
    return typeof this.#client.pipeline === 'function' ? undefined : 'it has no pipeline() (ioredis 5 or later is needed)'
  }

  /** Whether Redis itself answered with this error (rather than the connection failing). */
  isReply(error: unknown): boolean {
    return error instanceof Error && error.name === 'ReplyError'
  }
}
