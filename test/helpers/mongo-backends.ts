/**
 * Where MongoStore's suites run: a real MongoDB server named by env MONGODB_URL, and, always, the
 * in-memory imitation (test/helpers/mongo-imitation.ts), which is not MongoDB. Each backend gives
 * a fresh collection, a raw view of it (for looking at what the store wrote and for planting
 * documents), and the commands that reached it, named as the server names them.
 */
import { randomUUID } from 'node:crypto'
import type { Collection, CommandStartedEvent, MongoClient } from 'mongodb'
import type { MongoSessionDocument } from '../../src/stores/mongodb/updates.js'
import { ImitationCollection } from './mongo-imitation.js'

export const MONGODB_URL = process.env.MONGODB_URL

/** Why the real-server suites are skipped, or `false` when they run. */
export const REAL_SERVER_SKIP: string | false = MONGODB_URL
  ? false
  : 'MONGODB_URL is not set: no MongoDB server to run against (none is installable here without downloading ' +
    'a binary). Start one and run e.g. MONGODB_URL=mongodb://127.0.0.1:27017 npm test'

/** The parts of a collection the tests use to look at and plant documents. */
export interface RawCollection {
  readonly collectionName: string
  findOne(filter: Record<string, unknown>): Promise<Record<string, unknown> | null>
  insertOne(document: Record<string, unknown>): Promise<unknown>
  createIndex(key: Record<string, number>, options: { expireAfterSeconds: number }): Promise<string>
  indexes(): Promise<Array<{ name?: string; key: Record<string, unknown>; expireAfterSeconds?: number }>>
}

export interface MongoBackend {
  /** What the describe blocks say they run on. */
  readonly label: string
  /** A new, empty collection: the one to give MongoStore, and the raw view of the same collection. */
  collection(): Promise<{ collection: Collection<MongoSessionDocument>; raw: RawCollection }>
  /** Names of the commands sent to collections this backend made, since the last call. */
  takeCommands(): string[]
  /** The server's URL and a client on it, for the tests of the store's own connection (real server only). */
  readonly url?: string
  readonly client?: MongoClient
  close(): Promise<void>
}

const COMMAND_NAMES: Record<string, string> = {
  findOne: 'find',
  updateOne: 'update',
  findOneAndUpdate: 'findAndModify',
  deleteOne: 'delete',
  insertOne: 'insert',
  createIndex: 'createIndexes',
  indexes: 'listIndexes',
}

export function imitationBackend(): MongoBackend {
  const made: ImitationCollection[] = []
  let seen = new Map<ImitationCollection, number>()
  return {
    label: 'an in-memory imitation of a collection (mingo), NOT a MongoDB server',
    async collection() {
      const collection = new ImitationCollection(`sessions_${randomUUID()}`)
      made.push(collection)
      // The imitation has the methods MongoStore calls, not the driver's whole Collection type.
      return { collection: collection as unknown as Collection<MongoSessionDocument>, raw: collection as unknown as RawCollection }
    },
    takeCommands() {
      const commands: string[] = []
      for (const collection of made) {
        const from = seen.get(collection) ?? 0
        commands.push(...collection.commands.slice(from).map((name) => COMMAND_NAMES[name] ?? name))
      }
      seen = new Map(made.map((collection) => [collection, collection.commands.length]))
      return commands
    },
    async close() {},
  }
}

/** A backend on the server at `url`: one client with command monitoring, one database per run. */
export async function realBackend(url: string): Promise<MongoBackend> {
  const { MongoClient } = await import('mongodb')
  const client = new MongoClient(url, { monitorCommands: true, serverSelectionTimeoutMS: 5000 })
  await client.connect()
  const db = client.db(`koa_atomic_session_test_${randomUUID().slice(0, 8)}`)
  const names = new Set<string>()
  let commands: string[] = []
  client.on('commandStarted', (event: CommandStartedEvent) => {
    const target: unknown = event.command[event.commandName]
    if (typeof target === 'string' && names.has(target)) commands.push(event.commandName)
  })
  return {
    label: `the MongoDB server at MONGODB_URL`,
    url,
    client,
    async collection() {
      const name = `sessions_${randomUUID()}`
      names.add(name)
      const collection = db.collection<MongoSessionDocument>(name)
      return { collection, raw: collection as unknown as RawCollection }
    },
    takeCommands() {
      const taken = commands
      commands = []
      return taken
    },
    async close() {
      await db.dropDatabase().catch(() => undefined)
      await client.close()
    },
  }
}
