/**
 * koa-atomic-session/mongodb: `MongoStore`, one document per session, on the official `mongodb`
 * driver (version 6 or later).
 *
 * Layout (what an operator sees in mongosh): the session whose store key is `id` (the
 * middleware's prefix and the session id) is the document `{ _id: id, data: { … }, expiresAt }`
 * in the collection `sessions`; `data` holds one field per top-level key (see updates.ts for the
 * stored form and the escaping of field names). Every operation is one command in the common
 * case: get = findOne; apply and applyIf = updateOne (with upsert when it may create the
 * session); increment = findOneAndUpdate with `$inc`; touch = updateOne; destroy = deleteOne.
 *
 * Expired documents: MongoDB's TTL monitor deletes them only about once a minute, so every
 * operation matches live documents only (`expiresAt > now`, with this process's clock). A write
 * that finds the id taken by an expired document (the upsert fails with a duplicate key on `_id`)
 * deletes that document and writes again, so the new session starts empty: no key of the expired
 * one comes back.
 */
import type { Collection, MongoClient, MongoClientOptions, UpdateResult } from 'mongodb'
import { SessionValueError } from '../../errors.js'
import type { ConditionalPatch, Patch, Store } from '../../store.js'
import { NOT_A_NUMBER_PROBLEM } from '../../values.js'
import { withDeadline } from '../deadline.js'
import { defaultsFor, openClient } from './connection.js'
import {
  createsSession,
  expectFilter,
  expectsOnlyAbsence,
  expiredFilter,
  incrementUpdate,
  liveFilter,
  patchUpdate,
  projectionOf,
  recordOf,
  sumOf,
  touchUpdate,
  type MongoSessionDocument,
} from './updates.js'

export type { MongoSessionDocument } from './updates.js'

export interface MongoStoreOptions {
  /**
   * `mongodb://…` or `mongodb+srv://…`: the store opens its own `MongoClient` (the `mongodb`
   * package must be installed) and `close()` closes it. The database is `dbName`, else the one
   * named in the URL, else the driver's default (`test`).
   */
  url?: string
  /**
   * Options for the client the store opens from `url`. Unless they or the URL say otherwise,
   * `serverSelectionTimeoutMS` is `timeoutMs`, so an unreachable server fails a request in time.
   */
  clientOptions?: MongoClientOptions
  /** A `MongoClient` the application made and owns; the store never closes it. */
  client?: MongoClient
  /** The database, with `url` or `client`. */
  dbName?: string
  /** The collection, with `url` or `client`. Default `'sessions'`. */
  collectionName?: string
  /** A collection the application chose itself (its client stays the application's). */
  collection?: Collection<MongoSessionDocument>
  /**
   * The longest, in milliseconds, that any one store operation may wait. Past it the operation
   * rejects with an error saying the session store did not answer, and the request answers 503
   * (a write that timed out may still be applied by the server: not confirmed is not "not
   * written"). `ensureIndex()` is not limited. Default `2000`.
   */
  timeoutMs?: number
}

const OWN_OPTIONS: ReadonlySet<string> = new Set(['url', 'clientOptions', 'client', 'dbName', 'collectionName', 'collection', 'timeoutMs'])
const DEFAULT_COLLECTION = 'sessions'
const DEFAULT_TIMEOUT_MS = 2000
// setTimeout's largest delay; a longer one fires at once.
const MAX_TIMEOUT_MS = 2 ** 31 - 1
// A write whose upsert keeps meeting a taken `_id` gives up after this many attempts. Each retry
// follows the removal of an expired document or a concurrent insert of a live one, after which the
// next attempt matches, so more than two means documents keep expiring and reappearing under it.
const UPSERT_ATTEMPTS = 4

/** MongoDB's error codes that the store turns into answers instead of failures. */
const DUPLICATE_KEY = 11000
const TYPE_MISMATCH = 14
const INDEX_OPTIONS_CONFLICT = 85
const INDEX_KEY_SPECS_CONFLICT = 86

/**
 * Read options for every command that returns data, whatever the application configured on its
 * client: numbers come back as JavaScript numbers (not `Long`, `Int32` wrappers or bigint) and
 * documents as objects (not raw BSON buffers).
 */
const AS_NUMBERS = { promoteLongs: true, promoteValues: true, useBigInt64: false, raw: false } as const

// Stops a retry loop whose operation already timed out: what it would send is never sent.
const LATE = Symbol('late')

/**
 * The MongoDB store: see the module comment for the layout. Build it from `url`, a `client`, or a
 * `collection`; call `ensureIndex()` once at start so MongoDB removes expired sessions.
 */
export class MongoStore implements Store {
  /** The longest any one operation may wait (option `timeoutMs`). */
  readonly timeoutMs: number
  readonly #collection: Collection<MongoSessionDocument> | undefined
  /** Set when the store opens its own client (built from url); opened on first use. */
  readonly #open: (() => Promise<MongoClient>) | undefined
  #own: Promise<{ client: MongoClient; collection: Collection<MongoSessionDocument> }> | undefined
  readonly #dbName: string | undefined
  readonly #collectionName: string
  #closed = false

  constructor(options: MongoStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('MongoStore options must be an object: { url }, { client } or { collection }')
    }
    for (const name of Object.keys(options)) {
      if (!OWN_OPTIONS.has(name)) {
        throw new TypeError(`MongoStore option ${name} is unknown; driver settings belong in clientOptions (with url) or on your own client`)
      }
    }
    const { url, clientOptions, client, dbName, collectionName = DEFAULT_COLLECTION, collection, timeoutMs = DEFAULT_TIMEOUT_MS } = options
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) {
      throw new TypeError(`MongoStore option timeoutMs must be a number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, got ${String(timeoutMs)}`)
    }
    this.timeoutMs = timeoutMs
    const sources = [url, client, collection].filter((source) => source !== undefined).length
    if (sources !== 1) {
      throw new TypeError(`MongoStore needs exactly one of the options url, client or collection, got ${sources === 0 ? 'none' : 'several'}`)
    }
    if (dbName !== undefined && (typeof dbName !== 'string' || dbName === '')) {
      throw new TypeError(`MongoStore option dbName must be a non-empty string, got ${String(dbName)}`)
    }
    if (typeof collectionName !== 'string' || collectionName === '') {
      throw new TypeError(`MongoStore option collectionName must be a non-empty string, got ${String(collectionName)}`)
    }
    this.#dbName = dbName
    this.#collectionName = collectionName

    if (collection !== undefined) {
      const extra = (['dbName', 'collectionName', 'clientOptions'] as const).filter((name) => options[name] !== undefined)
      if (extra.length > 0) throw new TypeError(`MongoStore option collection cannot be combined with ${extra.join(', ')}: the collection already names them`)
      if (!isCollection(collection)) {
        throw new TypeError('MongoStore option collection must be a Collection of the mongodb driver (db.collection(name))')
      }
      this.#collection = collection
      return
    }
    if (client !== undefined) {
      if (clientOptions !== undefined) throw new TypeError('MongoStore option client cannot be combined with clientOptions: configure the client itself')
      if (typeof (client as Partial<MongoClient> | null)?.db !== 'function') {
        throw new TypeError('MongoStore option client must be a MongoClient of the mongodb driver')
      }
      this.#collection = client.db(dbName).collection<MongoSessionDocument>(collectionName)
      return
    }
    if (typeof url !== 'string' || !/^mongodb(\+srv)?:\/\//.test(url)) {
      throw new TypeError(`MongoStore option url must be a mongodb:// or mongodb+srv:// URL string, got ${String(url)}`)
    }
    if (clientOptions !== undefined && (typeof clientOptions !== 'object' || clientOptions === null)) {
      throw new TypeError('MongoStore option clientOptions must be an object of MongoClient options')
    }
    this.#open = () => openClient(url, { ...defaultsFor(url, clientOptions, timeoutMs), ...clientOptions })
  }

  /**
   * Creates the TTL index on `expiresAt` (`expireAfterSeconds: 0`), so MongoDB deletes each
   * session document once its `expiresAt` has passed (its TTL monitor runs about once a minute;
   * reads ignore expired documents meanwhile). Creating an index that exists changes nothing, so
   * call it on every start. Resolves the index's name.
   */
  async ensureIndex(): Promise<string> {
    const collection = await this.#use()
    try {
      return await collection.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 })
    } catch (error) {
      const code = codeOf(error)
      if (code !== INDEX_OPTIONS_CONFLICT && code !== INDEX_KEY_SPECS_CONFLICT) throw error
      throw new Error(
        `MongoStore.ensureIndex(): the collection ${collection.collectionName} already has an index on expiresAt with other ` +
          'options, and MongoStore needs { expiresAt: 1 } with expireAfterSeconds: 0 (expiresAt is the moment each session ' +
          'ends). Drop the old index (db.collection.dropIndex(name)), or change it with collMod, then start again.',
        { cause: error },
      )
    }
  }

  async get(id: string): Promise<Record<string, unknown> | undefined> {
    const document = await this.#run('findOne', (collection) =>
      collection.findOne(liveFilter(id, Date.now()), { projection: { data: 1 }, ...AS_NUMBERS }),
    )
    return recordOf(document)
  }

  async apply(id: string, patch: Patch): Promise<void> {
    await this.#run('updateOne (apply)', async (collection, late) => {
      // A patch that only removes keys (or only moves the expiry) has nothing to create a session with.
      if (!createsSession(patch)) {
        const now = Date.now()
        await collection.updateOne(liveFilter(id, now), patchUpdate(patch, now))
        return
      }
      await upsertLive(collection, id, late, (now) => collection.updateOne(liveFilter(id, now), patchUpdate(patch, now), { upsert: true }))
    })
  }

  async applyIf(id: string, patch: ConditionalPatch): Promise<boolean> {
    return this.#run('updateOne (applyIf)', async (collection, late) => {
      const write = (upsert: boolean): Promise<UpdateResult<MongoSessionDocument>> => {
        const now = Date.now()
        return collection.updateOne(expectFilter(id, patch.expect, now), patchUpdate(patch, now), { upsert })
      }
      // A value is expected: only a live session can hold it, so there is nothing to create.
      if (!expectsOnlyAbsence(patch.expect)) return (await write(false)).matchedCount === 1
      if (!createsSession(patch)) {
        if ((await write(false)).matchedCount === 1) return true
        // No live session holds the keys (absence holds, and there is nothing to write to none),
        // or a live one holds one of them.
        if (late()) throw LATE
        const live = await collection.findOne(liveFilter(id, Date.now()), { projection: { _id: 1 } })
        return live === null
      }
      for (let attempt = 1; attempt <= UPSERT_ATTEMPTS; attempt++) {
        try {
          await write(true)
          return true
        } catch (error) {
          if (codeOf(error) !== DUPLICATE_KEY) throw error
        }
        // The id is taken by a document the filter did not match: an expired one (remove it: its
        // keys are absent, and then write again), or a live one, which either holds an expected key
        // (a conflict) or was just inserted by a concurrent write: without upsert, the filter decides.
        if (late()) throw LATE
        const removed = await collection.deleteOne(expiredFilter(id, Date.now()))
        if (late()) throw LATE
        if (removed.deletedCount === 0) return (await write(false)).matchedCount === 1
      }
      throw takenError()
    })
  }

  async increment(id: string, key: string, by: number, ttlMs: number): Promise<number> {
    const document = await this.#run('findOneAndUpdate (increment)', (collection, late) =>
      upsertLive(collection, id, late, (now) =>
        collection.findOneAndUpdate(liveFilter(id, now), incrementUpdate(key, by, ttlMs, now), {
          upsert: true,
          returnDocument: 'after',
          projection: projectionOf(key),
          ...AS_NUMBERS,
        }),
      ).catch((error: unknown) => {
        // $inc refuses a field that is not a number before changing anything, expiry included.
        if (codeOf(error) === TYPE_MISMATCH) throw new SessionValueError(key, NOT_A_NUMBER_PROBLEM)
        throw error
      }),
    )
    return sumOf(document, key)
  }

  async touch(id: string, ttlMs: number): Promise<void> {
    await this.#run('updateOne (touch)', (collection) => {
      const now = Date.now()
      return collection.updateOne(liveFilter(id, now), touchUpdate(ttlMs, now))
    })
  }

  async destroy(id: string): Promise<void> {
    await this.#run('deleteOne', (collection) => collection.deleteOne({ _id: id }))
  }

  /** Closes the client the store opened itself (from url); a given `client` or `collection` stays open. */
  async close(): Promise<void> {
    if (this.#closed || this.#open === undefined) return
    this.#closed = true
    const own = await this.#own?.catch(() => undefined)
    await own?.client.close()
  }

  /** The collection, opening the store's own client on first use. */
  async #use(): Promise<Collection<MongoSessionDocument>> {
    if (this.#closed) throw new Error('MongoStore was closed (store.close()); it cannot be used afterwards')
    if (this.#collection) return this.#collection
    this.#own ??= (this.#open as () => Promise<MongoClient>)().then((client) => ({
      client,
      collection: client.db(this.#dbName).collection<MongoSessionDocument>(this.#collectionName),
    }))
    return (await this.#own).collection
  }

  /**
   * Runs one operation within `timeoutMs`. `late()` turns true once the operation has been
   * reported failed, so a retry loop stops instead of writing after the fact.
   */
  #run<T>(command: string, send: (collection: Collection<MongoSessionDocument>, late: () => boolean) => Promise<T>): Promise<T> {
    return withDeadline(
      this.timeoutMs,
      () => new Error(`MongoDB session store did not answer ${command} within ${this.timeoutMs} ms`),
      (late) => this.#use().then((collection) => send(collection, late)),
    )
  }
}

/**
 * Runs `write` (an upsert on the live filter) and, when the id is taken by a document the filter
 * did not match, removes that document if it is expired and runs `write` again: an expired
 * session must not lend its keys to the new one, and a document a concurrent write just inserted
 * is live, so the next attempt matches it.
 */
async function upsertLive<T>(collection: Collection<MongoSessionDocument>, id: string, late: () => boolean, write: (now: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; attempt <= UPSERT_ATTEMPTS; attempt++) {
    try {
      return await write(Date.now())
    } catch (error) {
      if (codeOf(error) !== DUPLICATE_KEY) throw error
    }
    if (late()) throw LATE
    await collection.deleteOne(expiredFilter(id, Date.now()))
    if (late()) throw LATE
  }
  throw takenError()
}

// The message names no id: it reaches logs, where a session id is a credential.
function takenError(): Error {
  return new Error(
    `MongoStore could not write a session: its _id stayed taken by a document that was neither live nor expired after ${UPSERT_ATTEMPTS} attempts ` +
      '(a unique index on another field of the collection can cause this)',
  )
}

/** The numeric `code` of a MongoDB error, if any. */
function codeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined
}

function isCollection(value: unknown): value is Collection<MongoSessionDocument> {
  const candidate = value as Partial<Record<'findOne' | 'updateOne' | 'findOneAndUpdate' | 'deleteOne', unknown>> | null
  return typeof candidate === 'object' && candidate !== null &&
    ['findOne', 'updateOne', 'findOneAndUpdate', 'deleteOne'].every((name) => typeof candidate[name as keyof typeof candidate] === 'function')
}
