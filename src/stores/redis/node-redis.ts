/**
 * The node-redis side of RedisStore: an adapter over a client from `createClient`,
 * `createCluster` or `createSentinel` (package `redis`, v5 or later), giving RedisStore the same
 * commands and round trips as the ioredis adapter (the shape is `RedisAdapter` in index.ts). The
 * store never opens, and never closes, a node-redis connection: the application owns it.
 */
import type { Script } from './scripts.js'
import { redirectionOf, type Wait } from './wait.js'

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

/**
 * A `multi()` of a client or sentinel, used as a plain pipeline of raw commands. Its `addCommand`
 * takes `(args)` on a client and `(isReadonly, args)` on a sentinel.
 */
interface RawPipeline {
  addCommand(...args: unknown[]): unknown
  execAsPipeline(): Promise<unknown[]>
}

/** What `confirm` uses of a node-redis cluster to reach the node that serves a key. */
interface NodeRedisCluster {
  getNodeClientForKey(key: string): Promise<NodeRedisClient>
  readonly nodeByAddress: Map<string, unknown>
  nodeClient(node: unknown): Promise<NodeRedisClient>
  pTTL(key: string): Promise<unknown>
}

/** Redirections followed per write before giving up (node-redis's own default is 16). */
const MAX_REDIRECTIONS = 16

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
  /** Set when the client is a cluster, whose nodes `confirm` addresses one by one. */
  readonly #cluster: NodeRedisCluster | undefined
  readonly #sentinel: boolean
  #nextReady: Promise<void> | undefined

  constructor(client: NodeRedisClient) {
    this.#client = client
    // node-redis 6 arms an AbortSignal timer for every plain command (5 s by default), about
    // 10 µs each; RedisStore already bounds every operation with one plain timer (timeoutMs), so
    // its commands go through a view of the client with that per-command timeout turned off.
    const configurable = client as NodeRedisClient & WithCommandOptions
    this.#commands = configurable.withCommandOptions?.({ timeout: 0 }) ?? client
    const shape = client as unknown as Record<string, unknown>
    this.#cluster = typeof shape.nodeClient === 'function' && shape.nodeByAddress instanceof Map ? (client as unknown as NodeRedisCluster) : undefined
    this.#sentinel = typeof shape.getMasterNode === 'function' && typeof shape.acquire === 'function'
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
    // exec() rejects (MultiErrorReply) when any command in the transaction failed; the first
    // command's own error says why, as ioredis' does.
    await multi.exec().catch((error: unknown) => {
      const { replies, errorIndexes } = error as { replies?: unknown[]; errorIndexes?: number[] }
      throw replies?.[errorIndexes?.[0] ?? -1] ?? error
    })
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

  /**
   * The write and WAIT as one pipeline (`execAsPipeline` of a `multi()` that holds MULTI and EXEC
   * as raw commands), so nothing of another caller's can come between them on the connection. A
   * cluster would send the pipeline to the key's node but not follow MOVED or ASK, so on a
   * cluster it goes to the node client that serves the key, and a redirection sends the whole
   * pipeline on: after MOVED to the key's new node, once a keyed read through the cluster has
   * refreshed its slots; after ASK to the node named, behind ASKING.
   */
  async confirm(key: string, commands: string[][], wait: Wait): Promise<unknown[]> {
    const all = [...commands, ['WAIT', String(wait.replicas), String(wait.timeoutMs)]]
    const cluster = this.#cluster
    if (cluster === undefined) return this.#pipeline(this.#commands, all)
    let node = await cluster.getNodeClientForKey(key)
    let asking = false
    for (let redirections = 0; ; redirections++) {
      try {
        // ASKING lets the importing node take the one transaction or command that follows.
        const replies = await this.#pipeline(node, asking ? [['ASKING'], ...all] : all)
        return asking ? replies.slice(1) : replies
      } catch (error) {
        const redirection = redirectionOf(error)
        if (redirection === undefined || redirections >= MAX_REDIRECTIONS) throw error
        asking = redirection.ask
        if (!asking) {
          await cluster.pTTL(key)
          node = await cluster.getNodeClientForKey(key)
          continue
        }
        if (!cluster.nodeByAddress.has(redirection.address)) await cluster.pTTL(key) // a node new to the client
        const target = cluster.nodeByAddress.get(redirection.address)
        if (target === undefined) throw error
        node = await cluster.nodeClient(target)
      }
    }
  }

  #pipeline(client: NodeRedisClient, commands: string[][]): Promise<unknown[]> {
    const pipeline = client.multi() as unknown as RawPipeline
    for (const args of commands) {
      if (this.#sentinel && client === this.#commands) pipeline.addCommand(false, args)
      else pipeline.addCommand(args)
    }
    return pipeline.execAsPipeline()
  }

  cannotConfirm(): string | undefined {
    if (this.#cluster && typeof this.#cluster.getNodeClientForKey !== 'function') {
      return 'a node-redis cluster needs node-redis 6.1 or later (cluster.getNodeClientForKey) to send WAIT to the node that took the write'
    }
    // The write and its WAIT go as raw commands, which node-redis does not prefix.
    const keyPrefix = (this.#client as { _keyPrefix?: unknown })._keyPrefix
    if (typeof keyPrefix === 'string' && keyPrefix !== '') {
      return `the node-redis client has keyPrefix "${keyPrefix}": leave it out and give RedisStore option prefix instead`
    }
    return undefined
  }

  /** Whether Redis itself answered with this error (rather than the connection failing). */
  isReply(error: unknown): boolean {
    return error instanceof Error && REPLY_ERRORS.has(error.constructor.name)
  }
}
