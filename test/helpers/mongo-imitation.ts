/**
 * An in-memory IMITATION of a MongoDB collection, for running MongoStore's control flow (upsert
 * retries, expired documents, conflicts, key escaping) when no MongoDB server is available. It is
 * NOT MongoDB: query matching, projection and update operators come from mingo (an independent
 * JavaScript implementation of MongoDB's query language), and the few behaviours MongoStore relies
 * on that mingo does not imitate are written here after MongoDB's documentation:
 * - a unique `_id`: an upsert whose filter matches nothing inserts `{ _id: <filter's _id> }` plus
 *   the update, and fails with code 11000 (duplicate key) when that `_id` exists;
 * - `$inc` on a field holding a non-number fails with code 14 (TypeMismatch) and changes nothing;
 * - stored field names may not contain `.`, start with `$`, or contain NUL;
 * - no TTL monitor: expired documents stay until deleted, the worst case MongoStore must handle.
 * Each operation runs atomically after yielding to the event loop once, so concurrent operations
 * interleave between commands as they do against a server.
 * Nothing that passes here is evidence about a real server: see test/stores/mongodb.test.ts.
 */
import { setImmediate as tick } from 'node:timers/promises'
import { Query } from 'mingo'
import { update as applyUpdate } from 'mingo/updater'

type Doc = Record<string, unknown> & { _id?: unknown }
type Filter = Record<string, unknown>
type Update = Record<string, Record<string, unknown> | undefined>

/** An error shaped like the driver's MongoServerError (MongoStore reads only `code`). */
export class ImitationServerError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message)
    this.name = 'MongoServerError'
  }
}

export class ImitationCollection {
  readonly collectionName: string
  readonly #documents = new Map<unknown, Doc>()
  readonly #indexes = new Map<string, { key: Record<string, number>; expireAfterSeconds?: number }>()
  /** The commands run, in order: what a test can assert about round trips. */
  readonly commands: string[] = []

  constructor(name = 'sessions') {
    this.collectionName = name
  }

  async findOne(filter: Filter, options: { projection?: Record<string, number> } = {}): Promise<Doc | null> {
    await this.#enter('findOne')
    const found = this.#find(filter)
    return found ? project(found, options.projection) : null
  }

  async insertOne(document: Doc): Promise<{ insertedId: unknown }> {
    await this.#enter('insertOne')
    if (this.#documents.has(document._id)) throw duplicate(document._id)
    this.#store(structuredClone(document))
    return { insertedId: document._id }
  }

  async updateOne(filter: Filter, update: Update, options: { upsert?: boolean } = {}) {
    await this.#enter('updateOne')
    const { matched, upserted } = this.#update(filter, update, options.upsert === true)
    return { acknowledged: true, matchedCount: matched ? 1 : 0, modifiedCount: matched ? 1 : 0, upsertedCount: upserted ? 1 : 0, upsertedId: upserted ? filter._id : null }
  }

  async findOneAndUpdate(
    filter: Filter,
    update: Update,
    options: { upsert?: boolean; returnDocument?: 'before' | 'after'; projection?: Record<string, number> } = {},
  ): Promise<Doc | null> {
    await this.#enter('findOneAndUpdate')
    if (options.returnDocument !== 'after') throw new Error('the imitation only answers returnDocument: "after"')
    const { document } = this.#update(filter, update, options.upsert === true)
    return document ? project(document, options.projection) : null
  }

  async deleteOne(filter: Filter): Promise<{ acknowledged: true; deletedCount: number }> {
    await this.#enter('deleteOne')
    const found = this.#find(filter)
    if (found) this.#documents.delete(found._id)
    return { acknowledged: true, deletedCount: found ? 1 : 0 }
  }

  async createIndex(key: Record<string, number>, options: { expireAfterSeconds?: number } = {}): Promise<string> {
    await this.#enter('createIndex')
    const name = Object.entries(key).map(([field, order]) => `${field}_${order}`).join('_')
    const existing = this.#indexes.get(name)
    if (existing && existing.expireAfterSeconds !== options.expireAfterSeconds) {
      throw new ImitationServerError(85, `An existing index has the same name as the requested index: ${name}`)
    }
    this.#indexes.set(name, { key, ...options })
    return name
  }

  async indexes(): Promise<Array<{ name: string; key: Record<string, number>; expireAfterSeconds?: number }>> {
    await this.#enter('indexes')
    return [...this.#indexes].map(([name, index]) => ({ name, ...index }))
  }

  /** Every stored document, as copies (what a raw look at the collection shows). */
  all(): Doc[] {
    return [...this.#documents.values()].map((document) => structuredClone(document))
  }

  async #enter(command: string): Promise<void> {
    await tick()
    this.commands.push(command)
  }

  #find(filter: Filter): Doc | undefined {
    const query = new Query(filter)
    for (const document of this.#documents.values()) if (query.test(document)) return document
    return undefined
  }

  /** One atomic update: on a copy, checked, then stored. */
  #update(filter: Filter, update: Update, upsert: boolean): { matched: boolean; upserted: boolean; document?: Doc } {
    const found = this.#find(filter)
    if (!found && !upsert) return { matched: false, upserted: false }
    if (!found && typeof filter._id !== 'string') throw new Error('the imitation upserts only with an _id equality in the filter')
    if (!found && this.#documents.has(filter._id)) throw duplicate(filter._id)
    const document: Doc = found ? structuredClone(found) : { _id: filter._id }
    for (const [path, by] of Object.entries(update.$inc ?? {})) {
      const current = valueAt(document, path)
      if (current !== undefined && typeof current !== 'number') {
        throw new ImitationServerError(14, `Cannot apply $inc to a value of non-numeric type. {_id: ${JSON.stringify(document._id)}} has the field '${path}' of non-numeric type ${typeof current}`)
      }
      if (typeof by !== 'number') throw new ImitationServerError(14, 'Cannot increment with non-numeric argument')
    }
    applyUpdate(document, update)
    this.#store(document)
    return { matched: Boolean(found), upserted: !found, document }
  }

  #store(document: Doc): void {
    checkFieldNames(document, '')
    this.#documents.set(document._id, document)
  }
}

function duplicate(id: unknown): ImitationServerError {
  return new ImitationServerError(11000, `E11000 duplicate key error collection: sessions index: _id_ dup key: { _id: ${JSON.stringify(id)} }`)
}

function valueAt(document: Doc, path: string): unknown {
  let value: unknown = document
  for (const part of path.split('.')) value = typeof value === 'object' && value !== null ? (value as Doc)[part] : undefined
  return value
}

function project(document: Doc, projection: Record<string, number> | undefined): Doc {
  const copy = structuredClone(document)
  if (!projection) return copy
  return new Query({}).find<Doc>([copy], projection).all()[0] as Doc
}

/** What a MongoDB server refuses to store as a field name. */
function checkFieldNames(value: unknown, path: string): void {
  if (typeof value !== 'object' || value === null || value instanceof Date) return
  for (const [name, child] of Object.entries(value)) {
    if (name.includes('.') || name.startsWith('$') || name.includes('\u0000')) {
      throw new ImitationServerError(2, `field name ${JSON.stringify(name)} at ${path || '(root)'} cannot be stored`)
    }
    checkFieldNames(child, path ? `${path}.${name}` : name)
  }
}
