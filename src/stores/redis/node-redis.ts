/**
 * The node-redis side of RedisStore: an adapter over a client from `createClient`,
 * `createCluster` or `createSentinel` (package `redis`, v5 or later), giving RedisStore the same
 * commands and round trips as the ioredis adapter (the shape is `RedisAdapter` in index.ts). The
 * store never opens, and never closes, a node-redis connection: the application owns it.
 */
import type { Script } from './scripts.js'

interface ScriptArguments {
  keys: string[]
  arguments: string[]
}

/** The parts of a node-redis client, cluster or sentinel that RedisStore uses. */
export interface NodeRedisClient {
  readonly isOpen: boolean
  readonly isReady: boolean
  hGetAll(key: string): Promise<unknown>
  pExpire(key: string, milliseconds: number): Promise<unknown>
  del(key: string): Promise<unknown>
  evalSha(sha: string, options: ScriptArguments): Promise<unknown>
  eval(script: string, options: ScriptArguments): Promise<unknown>
  multi(): NodeRedisTransaction
  on(event: string, listener: () => void): unknown
  off(event: string, listener: () => void): unknown
}

interface NodeRedisTransaction {
  hSet(key: string, fieldsAndValues: string[]): NodeRedisTransaction
  hDel(key: string, fields: string[]): NodeRedisTransaction
  pExpire(key: string, milliseconds: number): NodeRedisTransaction
  exec(): Promise<unknown>
}

interface WithCommandOptions {
  withCommandOptions?(options: { timeout: number }): NodeRedisClient
}

export function isNodeRedisClient(client: object): client is NodeRedisClient {
  const candidate = client as Partial<Record<'hGetAll' | 'multi' | 'isOpen', unknown>>
  return typeof candidate.hGetAll === 'function' && typeof candidate.multi === 'function' && typeof candidate.isOpen === 'boolean'
}

// Error classes of node-redis for replies Redis sent (as opposed to connection failures). Matched
// by name because this module must not load `redis` itself.
const REPLY_ERRORS: ReadonlySet<string> = new Set(['ErrorReply', 'SimpleError', 'BlobError', 'MultiErrorReply'])

/** RedisStore's commands on a node-redis client, cluster or sentinel: one round trip each. */
export class NodeRedisAdapter {
  /** The client as the application gave it: its state and events. */
  readonly #client: NodeRedisClient
  /** The same client without a per-command timeout (see the constructor). */
  readonly #commands: NodeRedisClient
  #nextReady: Promise<void> | undefined

  constructor(client: NodeRedisClient) {
    this.#client = client
    // node-redis 6 arms an AbortSignal timer for every plain command (5 s by default), about
    // 10 µs each; RedisStore already bounds every operation with one plain timer (timeoutMs), so
    // its commands go through a view of the client with that per-command timeout turned off.
    const configurable = client as NodeRedisClient & WithCommandOptions
    this.#commands = configurable.withCommandOptions?.({ timeout: 0 }) ?? client
  }

  state(): 'ready' | 'waiting' | 'closed' {
    const client = this.#client
    return client.isReady ? 'ready' : client.isOpen ? 'waiting' : 'closed'
  }

  /**
   * Resolves when the client may have become ready (the caller checks `state()` again). Clients
   * and sentinels announce `ready`; a cluster announces `connect` once its slots are known.
   */
  nextReady(): Promise<void> {
    return (this.#nextReady ??= new Promise((resolve) => {
      const client = this.#client
      const wake = (): void => {
        client.off('ready', wake)
        client.off('connect', wake)
        this.#nextReady = undefined
        resolve()
      }
      client.on('ready', wake)
      client.on('connect', wake)
    }))
  }

  hgetall(key: string): Promise<unknown> {
    return this.#commands.hGetAll(key)
  }

  async transaction(key: string, fields: string[], removed: string[], ttlMs: number): Promise<void> {
    const multi = this.#commands.multi()
    if (fields.length > 0) multi.hSet(key, fields)
    if (removed.length > 0) multi.hDel(key, removed)
    multi.pExpire(key, ttlMs)
    // exec() rejects (MultiErrorReply) when any command in the transaction failed.
    await multi.exec()
  }

  pexpire(key: string, ttlMs: number): Promise<unknown> {
    return this.#commands.pExpire(key, ttlMs)
  }

  del(key: string): Promise<unknown> {
    return this.#commands.del(key)
  }

  async run(script: Script, key: string, args: string[]): Promise<unknown> {
    const options = { keys: [key], arguments: args }
    try {
      return await this.#commands.evalSha(script.sha, options)
    } catch (error) {
      // Script caches are per server and emptied by restarts and failovers: send the source once.
      if (!(error instanceof Error && error.message.startsWith('NOSCRIPT'))) throw error
      return this.#commands.eval(script.source, options)
    }
  }

  /** Whether Redis itself answered with this error (rather than the connection failing). */
  isReply(error: unknown): boolean {
    return error instanceof Error && REPLY_ERRORS.has(error.constructor.name)
  }
}
