/**
 * koa-atomic-session/redis: `RedisStore`, one hash per session, on ioredis or node-redis.
 *
 * Layout (what an operator sees with redis-cli): the session whose store key is `id` (the
 * middleware's prefix and the session id) lives in the hash `prefix + id`, one field per top-level
 * key, each value JSON-encoded; the hash's TTL is the session's expiry. Every operation is one
 * round trip: get = HGETALL; apply = MULTI HSET HDEL PEXPIRE EXEC; increment and applyIf = one Lua
 * script on that one hash (so they work on Cluster); touch = PEXPIRE; destroy = DEL. With
 * `waitReplicas`, every write is followed, in the same round trip and on the same connection, by
 * `WAIT waitReplicas waitTimeoutMs` (see `#write`).
 */
import { SessionValueError } from '../../errors.js'
import { fieldLength, FIELDS_LENGTH, PRESENT, storedText, type ConditionalPatch, type Patch, type Store } from '../../store.js'
import { withDeadline } from '../deadline.js'
import { decodeRecord, emptyRecord, encodeValue, NOT_A_NUMBER_PROBLEM, NOT_FINITE_PROBLEM } from '../../values.js'
import { isIoRedisClient, openIoRedis, IoRedisAdapter, type IoRedisClient, type IoRedisOptions, type OwnConnection } from './ioredis.js'
import { isNodeRedisClient, NodeRedisAdapter, type NodeRedisClient } from './node-redis.js'
import { APPLY_IF, INCREMENT, NOT_A_NUMBER, NOT_FINITE, type Script } from './scripts.js'
import { notConfirmed, transactionCommands, type Wait } from './wait.js'

export type { IoRedisClient, IoRedisOptions } from './ioredis.js'
export type { NodeRedisClient } from './node-redis.js'

export interface RedisStoreOptions extends IoRedisOptions {
  /**
   * `redis://[user:password@]host[:port][/db]` or `rediss://…` for TLS: the store opens its own
   * ioredis connection (ioredis must be installed) and `close()` closes it. Connection options
   * (`host`, `port`, `password`, `sentinels` + `name`, any ioredis option) do the same without a URL.
   */
  url?: string
  /**
   * A client the application made and owns: an ioredis `Redis` or `Cluster`, or a node-redis
   * client, cluster or sentinel (`createClient`, `createCluster`, `createSentinel`, v5 or later)
   * that is connected or connecting. The store never closes it.
   */
  client?: IoRedisClient | NodeRedisClient
  /** A namespace prepended to every key the middleware passes (which already starts with its own prefix). Default `''`. */
  prefix?: string
  /**
   * The longest, in milliseconds, that any one store operation may wait, whether for a reply or
   * for the connection to come back. Past it the operation rejects with an error saying the
   * session store is unreachable, and the request answers 503. Default `2000`.
   */
  timeoutMs?: number
  /**
   * How many replicas must hold a write before it counts as saved. Default `0`: Redis's own
   * asynchronous replication, and a change answered 2xx can vanish when a replica is promoted.
   * With `1` or more, every write (patch, increment, conditional write, touch, destroy, the
   * per-user index) is followed in the same round trip by `WAIT waitReplicas waitTimeoutMs`, and
   * a write that fewer replicas confirmed fails with an error (503) that says how many did. Such
   * a 503 means "not confirmed", not "not written": the change is on the master and may survive.
   * Run at least `waitReplicas + 1` replicas per master to keep accepting writes through a
   * failover; with exactly `waitReplicas`, writes fail until a replica is back, while reads go on.
   */
  waitReplicas?: number
  /**
   * How long, in milliseconds, Redis waits for the replicas of `waitReplicas` to confirm a write.
   * Default `200`; it must be shorter than `timeoutMs`, which bounds the whole operation.
   */
  waitTimeoutMs?: number
}

/**
 * What RedisStore needs from a client library; `IoRedisAdapter` and `NodeRedisAdapter` provide it,
 * so the store below is written once for both.
 */
interface RedisAdapter {
  /** `waiting`: connecting or reconnecting; `closed`: closed by its owner, or never opened. */
  state(): 'ready' | 'waiting' | 'closed'
  /** Resolves when the client may have become ready; the store then checks `state()` again. */
  nextReady(): Promise<void>
  hgetall(key: string): Promise<unknown>
  /** One MULTI/EXEC: HSET `fields` (field, value, …), HDEL `removed`, PEXPIRE `ttlMs`. */
  transaction(key: string, fields: string[], removed: string[], ttlMs: number): Promise<void>
  pexpire(key: string, ttlMs: number): Promise<unknown>
  del(key: string): Promise<unknown>
  /** EVALSHA with one key, falling back to EVAL when the server does not know the script. */
  run(script: Script, key: string, args: string[]): Promise<unknown>
  /**
   * Sends `commands` (a write on `key`, possibly wrapped in MULTI and EXEC) and then WAIT, as one
   * pipeline on the connection that serves `key`, following Cluster redirections with all of it;
   * resolves with every reply, WAIT's last. Rejects with the first error reply.
   */
  confirm(key: string, commands: string[][], wait: Wait): Promise<unknown[]>
  /** Why this client cannot send `confirm`, if it cannot. */
  cannotConfirm(): string | undefined
  isReply(error: unknown): boolean
}

const OWN_OPTIONS: ReadonlySet<string> = new Set(['url', 'client', 'prefix', 'timeoutMs', 'waitReplicas', 'waitTimeoutMs'])
const DEFAULT_TIMEOUT_MS = 2000
const DEFAULT_WAIT_TIMEOUT_MS = 200
// setTimeout's largest delay; a longer one fires at once.
const MAX_TIMEOUT_MS = 2 ** 31 - 1

// Rejects an operation whose deadline passed while it waited for the connection: it is never sent.
const LATE = Symbol('late')

/**
 * The Redis store: see the module comment for the layout. Build it from `url` or connection
 * options (ioredis), or hand it a `client` of either library.
 */
export class RedisStore implements Store {
  /** The namespace in front of every key (option `prefix`). */
  readonly prefix: string
  /** The longest any one operation may wait (option `timeoutMs`). */
  readonly timeoutMs: number
  /** How many replicas must confirm every write (option `waitReplicas`); 0: none. */
  readonly waitReplicas: number
  /** How long Redis waits for them (option `waitTimeoutMs`). */
  readonly waitTimeoutMs: number
  /** WAIT's arguments when `waitReplicas` > 0. */
  readonly #wait: Wait | undefined
  #adapter: RedisAdapter | undefined
  /** Set when the store opens its own connection (built from url or options). */
  readonly #own: Promise<OwnConnection> | undefined
  /** That connection, once open. */
  #connection: OwnConnection | undefined
  #closed = false

  constructor(options: RedisStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('RedisStore options must be an object, e.g. { url: "redis://127.0.0.1:6379" } or { client }')
    }
    const { url, client, prefix = '', timeoutMs = DEFAULT_TIMEOUT_MS, waitReplicas = 0, waitTimeoutMs = DEFAULT_WAIT_TIMEOUT_MS } = options
    if (typeof prefix !== 'string') throw new TypeError(`RedisStore option prefix must be a string, got ${typeof prefix}`)
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) {
      throw new TypeError(`RedisStore option timeoutMs must be a number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, got ${String(timeoutMs)}`)
    }
    if (!Number.isSafeInteger(waitReplicas) || waitReplicas < 0) {
      throw new TypeError(`RedisStore option waitReplicas must be a whole number of replicas, 0 or more, got ${String(waitReplicas)}`)
    }
    // WAIT 0 would block forever; a wait as long as the operation's bound would always time out first.
    if (!Number.isSafeInteger(waitTimeoutMs) || waitTimeoutMs < 1 || (waitReplicas > 0 && waitTimeoutMs >= timeoutMs)) {
      throw new TypeError(
        `RedisStore option waitTimeoutMs must be a whole number of milliseconds from 1 to less than timeoutMs (${timeoutMs}), got ${String(waitTimeoutMs)}`,
      )
    }
    this.prefix = prefix
    this.timeoutMs = timeoutMs
    this.waitReplicas = waitReplicas
    this.waitTimeoutMs = waitTimeoutMs
    this.#wait = waitReplicas > 0 ? { replicas: waitReplicas, timeoutMs: waitTimeoutMs } : undefined
    const connection: Record<string, unknown> = {}
    for (const [name, value] of Object.entries(options)) {
      if (OWN_OPTIONS.has(name)) continue
      // Any other option goes to ioredis, which ignores what it does not know: a misspelt
      // waitReplica would silently give up the durability it asked for.
      const meant = [...OWN_OPTIONS].find((own) => looksLike(name, own))
      if (meant) throw new TypeError(`RedisStore option ${name} is unknown: did you mean ${meant}? (other options go to ioredis, which would ignore it)`)
      connection[name] = value
    }
    const { db } = connection
    if (db !== undefined && !(Number.isSafeInteger(db) && (db as number) >= 0)) {
      throw new TypeError(`RedisStore option db must be a database number, 0 or more, got ${String(db)}`)
    }

    if (client !== undefined) {
      const extra = [...(url === undefined ? [] : ['url']), ...Object.keys(connection)]
      if (extra.length > 0) {
        throw new TypeError(`RedisStore option client cannot be combined with ${extra.join(', ')}: configure the client itself`)
      }
      this.#adapter = adapterFor(client)
      const unsupported = this.#wait && this.#adapter.cannotConfirm()
      if (unsupported) throw new TypeError(`RedisStore option waitReplicas cannot be used with this client: ${unsupported}`)
      return
    }
    if (url !== undefined && (typeof url !== 'string' || !/^(rediss?:\/\/|\/)/i.test(url))) {
      throw new TypeError(`RedisStore option url must be a redis:// or rediss:// URL (or a unix socket path), got ${JSON.stringify(url)}`)
    }
    this.#own = openIoRedis(url, connection)
    this.#own.then(
      (own) => {
        this.#adapter = own.adapter
        this.#connection = own
      },
      () => undefined,
    )
  }

  async get(id: string): Promise<Record<string, unknown> | undefined> {
    const fields = await this.getEncoded(id)
    return fields && decodeRecord(Object.entries(fields))
  }

  /** The session's fields as stored (JSON text), so the middleware decodes only what it reads. */
  async getEncoded(id: string): Promise<Record<string, string> | undefined> {
    const key = this.prefix + id
    return fieldsOf(await this.#run('HGETALL', (redis) => redis.hgetall(key)))
  }

  async apply(id: string, patch: Patch): Promise<void> {
    const key = this.prefix + id
    const fields = encodeFields(patch)
    const removed = patch.unset ?? []
    const ttlMs = ttlOf(patch.ttlMs)
    if (fields.length === 0 && removed.length === 0) {
      if (this.#wait) await this.#write('PEXPIRE', key, [['PEXPIRE', key, String(ttlMs)]])
      else await this.#run('PEXPIRE', (redis) => redis.pexpire(key, ttlMs))
      return
    }
    if (this.#wait) await this.#write('MULTI/EXEC', key, transactionCommands(key, fields, removed, ttlMs))
    else await this.#run('MULTI/EXEC', (redis) => redis.transaction(key, fields, removed, ttlMs))
  }

  async increment(id: string, key: string, by: number, ttlMs: number): Promise<number> {
    const hash = this.prefix + id
    const args = [key, String(by), String(ttlOf(ttlMs)), Number.isSafeInteger(by) ? '1' : '0']
    const notANumber = (error: unknown): never => {
      if (error instanceof Error && error.message.includes(NOT_A_NUMBER)) throw new SessionValueError(key, NOT_A_NUMBER_PROBLEM)
      if (error instanceof Error && error.message.includes(NOT_FINITE)) throw new SessionValueError(key, NOT_FINITE_PROBLEM)
      throw error
    }
    const reply = this.#wait
      ? await this.#writeScript('EVALSHA (increment)', INCREMENT, hash, args).catch(notANumber)
      : await this.#run('EVALSHA (increment)', (redis) => redis.run(INCREMENT, hash, args).catch(notANumber))
    const sum = typeof reply === 'number' ? reply : Number(reply)
    if (!Number.isFinite(sum)) throw new Error(`Redis answered the increment of "${key}" with ${String(reply)}, not a number`)
    return sum
  }

  async touch(id: string, ttlMs: number): Promise<void> {
    const key = this.prefix + id
    const ttl = ttlOf(ttlMs)
    if (this.#wait) await this.#write('PEXPIRE', key, [['PEXPIRE', key, String(ttl)]])
    else await this.#run('PEXPIRE', (redis) => redis.pexpire(key, ttl))
  }

  async destroy(id: string): Promise<void> {
    const key = this.prefix + id
    if (this.#wait) await this.#write('DEL', key, [['DEL', key]])
    else await this.#run('DEL', (redis) => redis.del(key))
  }

  async applyIf(id: string, patch: ConditionalPatch): Promise<boolean> {
    const key = this.prefix + id
    const expected = Object.entries(patch.expect)
    const fields = encodeFields(patch)
    const args = [String(ttlOf(patch.ttlMs)), String(expected.length), String(fields.length / 2)]
    // An empty string stands for "absent", NUL for "present": no JSON encoding is either.
    for (const [field, value] of expected) args.push(field, value === undefined ? '' : value === PRESENT ? '\0' : encodeValue(value))
    for (const field of fields) args.push(field)
    for (const field of patch.unset ?? []) args.push(field)
    const reply = this.#wait
      ? // A conflict wrote nothing, so there is nothing for replicas to confirm.
        await this.#writeScript('EVALSHA (applyIf)', APPLY_IF, key, args, (written) => Number(written) === 1)
      : await this.#run('EVALSHA (applyIf)', (redis) => redis.run(APPLY_IF, key, args))
    return Number(reply) === 1
  }

  /** Closes the connection the store opened itself (from url or options); a given `client` stays open. */
  async close(): Promise<void> {
    if (this.#closed || this.#own === undefined) return
    this.#closed = true
    const own = await this.#own.catch(() => undefined)
    await own?.close(this.timeoutMs)
  }

  /**
   * Runs one operation within `timeoutMs`: one timer per operation, however the client behaves.
   * While the client is not ready the command waits here, not in the client's queue, so an
   * operation that timed out is never sent later.
   */
  #run<T>(command: string, send: (redis: RedisAdapter) => Promise<T>): Promise<T> {
    return withDeadline(
      this.timeoutMs,
      () => {
        // Why the store's own connection is not ready, when ioredis said (a refused password, say).
        const last = this.#connection?.lastError()
        return unreachable(`no reply to ${command} within ${this.timeoutMs} ms${last ? ` (the connection's last error: ${last.message})` : ''}`)
      },
      (late) => {
        const adapter = this.#adapter
        return adapter !== undefined && !this.#closed && adapter.state() === 'ready'
          ? send(adapter)
          : this.#sendWhenReady(command, send, late)
      },
      (error) => this.#explain(command, error),
    )
  }

  /**
   * A write when `waitReplicas` > 0: `commands`, then `WAIT waitReplicas waitTimeoutMs`, in one
   * round trip on the connection that serves `key` (see wait.ts for why there). `noScript`: the
   * commands to send instead when the server does not know the script. Resolves with the write's
   * replies; rejects when fewer replicas confirmed a write that `wrote` says happened.
   */
  async #write(command: string, key: string, commands: string[][], wrote?: (replies: unknown[]) => boolean, noScript?: string[][]): Promise<unknown[]> {
    const wait = this.#wait as Wait
    const replies = await this.#run(command, (redis) =>
      redis.confirm(key, commands, wait).catch((error: unknown) => {
        // Script caches are per server and emptied by restarts and failovers: send the source once.
        if (noScript && error instanceof Error && error.message.startsWith('NOSCRIPT')) return redis.confirm(key, noScript, wait)
        throw error
      }),
    )
    const confirmed = Number(replies.pop())
    for (const reply of replies) {
      // EXEC answers an array that holds the error of any command that failed inside it.
      if (Array.isArray(reply)) for (const inner of reply) if (inner instanceof Error) throw inner
    }
    if (!(confirmed >= wait.replicas) && (wrote === undefined || wrote(replies))) {
      throw new RedisStoreError(`Redis session store: ${notConfirmed(command, confirmed, wait)}`)
    }
    return replies
  }

  /** `#write` of a script (EVALSHA, or EVAL when the server lost it); resolves with its reply. */
  async #writeScript(command: string, script: Script, key: string, args: string[], wrote?: (reply: unknown) => boolean): Promise<unknown> {
    const written = wrote && ((replies: unknown[]) => wrote(replies[0]))
    const evalsha = [['EVALSHA', script.sha, '1', key, ...args]]
    return (await this.#write(command, key, evalsha, written, [['EVAL', script.source, '1', key, ...args]]))[0]
  }

  async #sendWhenReady<T>(command: string, send: (redis: RedisAdapter) => Promise<T>, late: () => boolean): Promise<T> {
    if (this.#closed) throw new RedisStoreError('RedisStore was closed (store.close()); it cannot be used afterwards')
    const adapter = this.#adapter ?? (await this.#opened()).adapter
    for (;;) {
      const unusable = this.#connection?.unusable()
      if (unusable) {
        throw new RedisStoreError(`Redis refused the database RedisStore was given (option db, or the /db of url): ${unusable.message}`)
      }
      if (late()) throw LATE
      const state = adapter.state()
      if (state === 'ready') return send(adapter)
      if (state === 'closed') {
        throw unreachable(`the Redis client is closed, so ${command} cannot be sent (a given client must be connected by its owner)`)
      }
      await adapter.nextReady()
    }
  }

  async #opened(): Promise<OwnConnection> {
    try {
      return await (this.#own as Promise<OwnConnection>)
    } catch (error) {
      throw new RedisStoreError(error instanceof Error ? error.message : String(error), { cause: error })
    }
  }

  /**
   * Leaves Redis's own replies, value errors and the store's own errors as they are; any other
   * failure (a dropped connection, a client that gave up) means the store is out of reach.
   */
  #explain(command: string, error: unknown): unknown {
    if (error instanceof Error && error.message.startsWith('WRONGTYPE')) {
      return new RedisStoreError(
        `${command} found something other than a session hash at the session's key: another program writes keys under ` +
          "this store's prefix. It will not heal by itself: give the sessions a prefix of their own (option prefix), or delete that key",
        { cause: error },
      )
    }
    if (error instanceof RedisStoreError || error instanceof SessionValueError || this.#adapter?.isReply(error)) return error
    const reason = error instanceof Error ? error.message : String(error)
    return unreachable(`${command} failed: ${reason}`, error)
  }
}

/** An error the store raises itself, with a message meant for the operator. */
class RedisStoreError extends Error {
  override name = 'RedisStoreError'
}

function adapterFor(client: unknown): RedisAdapter {
  if (typeof client === 'object' && client !== null) {
    if (isNodeRedisClient(client)) return new NodeRedisAdapter(client)
    if (isIoRedisClient(client)) return new IoRedisAdapter(client)
  }
  throw new TypeError(
    'RedisStore option client must be an ioredis Redis or Cluster, or a node-redis client, cluster or sentinel ' +
      `(createClient, createCluster, createSentinel); got ${client === null ? 'null' : typeof client}`,
  )
}

/** Whether option `name` is probably `own` misspelt: the same but for case, or two edits away. */
function looksLike(name: string, own: string): boolean {
  if (name.toLowerCase() === own.toLowerCase()) return true
  if (Math.abs(name.length - own.length) > 2 || own.length < 5) return false
  // Edit distance, one row at a time.
  let row = Array.from({ length: own.length + 1 }, (_, j) => j)
  for (let i = 1; i <= name.length; i++) {
    const next = [i]
    for (let j = 1; j <= own.length; j++) {
      next[j] = Math.min((row[j] as number) + 1, (next[j - 1] as number) + 1, (row[j - 1] as number) + (name[i - 1] === own[j - 1] ? 0 : 1))
    }
    row = next
  }
  return (row[own.length] as number) <= 2
}

function unreachable(reason: string, cause?: unknown): Error {
  return new RedisStoreError(`Redis session store unreachable: ${reason}`, cause === undefined ? undefined : { cause })
}

/** PEXPIRE takes whole milliseconds; round up so a session never expires early. */
function ttlOf(ttlMs: number): number {
  return Math.ceil(ttlMs)
}

/** `patch.set` as HSET's flat (field, encoded value, …) list. */
function encodeFields(patch: Patch): string[] {
  const fields: string[] = []
  if (patch.set) for (const key of Object.keys(patch.set)) fields.push(key, storedText(patch, key))
  return fields
}

/**
 * HGETALL's reply as field texts, or `undefined` for no session. Clients shape it by protocol and
 * configuration: a plain object (both clients' defaults, handed on as it is), a Map (node-redis
 * type mapping) or a flat array (RESP2 raw). Buffers (an application's type mapping) become text.
 */
function fieldsOf(reply: unknown): Record<string, string> | undefined {
  if (typeof reply !== 'object' || reply === null) return undefined
  const pairs = reply instanceof Map || Array.isArray(reply)
  const fields: Record<string, string> & { [FIELDS_LENGTH]?: number } = pairs ? emptyRecord<string>() : (reply as Record<string, string>)
  let length = 0
  const add = (key: string, value: unknown): void => {
    const text = String(value)
    fields[key] = text
    length += fieldLength(key, text)
  }
  if (reply instanceof Map) for (const [key, value] of reply) add(String(key), value)
  else if (Array.isArray(reply)) for (let i = 0; i + 1 < reply.length; i += 2) add(String(reply[i]), reply[i + 1])
  else for (const key in fields) add(key, fields[key])
  if (length === 0) return undefined
  // The size check of a write then needs no walk over the fields (see FIELDS_LENGTH).
  fields[FIELDS_LENGTH] = length
  return fields
}
