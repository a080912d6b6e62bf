/**
 * MongoStore. Always: unit tests of the filters and update documents it builds (updates.ts), its
 * option checks, and the install advice without the driver; then the shared Store contract and
 * the store-specific tests on an in-memory imitation of a collection (mingo), which exercises the
 * store's control flow but is NOT MongoDB. Against a real MongoDB server only when env MONGODB_URL
 * names one; otherwise those suites report themselves skipped, with the reason.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import type { MongoClient } from 'mongodb'
import { SessionValueError } from '../../src/errors.js'
import { MongoStore } from '../../src/stores/mongodb/index.js'
import { ENCODED } from '../../src/store.js'
import {
  createsSession,
  escapeKey,
  expectFilter,
  expectsOnlyAbsence,
  expiredFilter,
  incrementUpdate,
  liveFilter,
  patchUpdate,
  projectionOf,
  recordOf,
  storedValue,
  sumOf,
  touchUpdate,
  unescapeKey,
  type MongoSessionDocument,
} from '../../src/stores/mongodb/updates.js'
import { storeContract } from '../contract/store-contract.js'
import { imitationBackend, MONGODB_URL, realBackend, REAL_SERVER_SKIP, type MongoBackend, type RawCollection } from '../helpers/mongo-backends.js'

const NOW = Date.UTC(2030, 0, 1)
/** The packaging tests load the built package (npm test builds it first). */
const BUILT = existsSync('dist/esm/stores/mongodb/index.js') && existsSync('dist/cjs/stores/mongodb/index.js') ? false : 'dist/ is not built: run npm run build (npm test does)'
const MINUTE = 60_000
const at = (ms: number) => new Date(ms)

describe('MongoStore: the documents it sends (updates.ts)', () => {
  it('escapes exactly the characters MongoDB treats specially in field names', () => {
    const cases: Array<[string, string]> = [
      ['user', 'user'],
      ['$e', '%24e'],
      ['a.b', 'a%2Eb'],
      ['a$b', 'a%24b'],
      ['100%', '100%25'],
      ['%24e', '%2524e'],
      ['', '%'],
      ['%', '%25'],
      ['nul\u0000', 'nul%00'],
      ['lone \ud800 high', 'lone %uD800 high'],
      ['lone \udc00 low', 'lone %uDC00 low'],
      ['pair 😀 and ü', 'pair 😀 and ü'],
      ['_id', '_id'],
    ]
    for (const [key, escaped] of cases) {
      assert.equal(escapeKey(key), escaped, JSON.stringify(key))
      assert.equal(unescapeKey(escaped), key, escaped)
    }
  })

  it('escapes every key to a distinct storable field name and back (20 000 random keys of risky characters)', () => {
    const alphabet = ['%', '.', '$', '\u0000', 'u', 'D', '8', '0', '2', '5', 'E', '\ud800', '\udc00', 'a', '😀', ' ']
    const byName = new Map<string, string>()
    let seed = 7
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31)
    for (let i = 0; i < 20_000; i++) {
      let key = ''
      const length = Math.floor(random() * 9)
      for (let j = 0; j < length; j++) key += alphabet[Math.floor(random() * alphabet.length)]
      const name = escapeKey(key)
      assert.equal(unescapeKey(name), key)
      assert.ok(name !== '' && !name.includes('.') && !name.startsWith('$') && !name.includes('\u0000'), JSON.stringify(name))
      assert.ok(!/[\ud800-\udfff]/.test(name.replace(/[\ud800-\udbff][\udc00-\udfff]/g, '')), `${JSON.stringify(name)} has a lone surrogate`)
      const other = byName.get(name)
      assert.ok(other === undefined || other === key, `${JSON.stringify(key)} and ${JSON.stringify(other)} both escape to ${name}`)
      byName.set(name, key)
    }
  })

  it('keeps finite numbers native and every other value as its JSON encoding', () => {
    assert.equal(storedValue(42), 42)
    assert.equal(storedValue(-1.5e-7), -1.5e-7)
    assert.equal(storedValue('42'), '"42"')
    assert.equal(storedValue(null), 'null')
    assert.equal(storedValue(true), 'true')
    assert.equal(storedValue({ b: 1, a: [1, 'x'] }), '{"b":1,"a":[1,"x"]}')
    assert.equal(storedValue(new Date(NOW)), JSON.stringify(new Date(NOW)))
    assert.equal(storedValue(Infinity), 'null', 'as JSON stores it')
  })

  it('reads a document back into a fresh, prototype-free record', () => {
    assert.equal(recordOf(null), undefined)
    const record = recordOf({
      _id: 'x',
      data: { user: '"ann"', n: 5, '%24e': 1.5, 'a%2Eb': '{"x":[1]}', '%': '"empty key"', hostile: '{"__proto__":{"polluted":1},"ok":1}' },
      expiresAt: at(NOW),
    })
    assert.equal('toString' in (record as object), false, 'no Object.prototype in its chain')
    assert.deepEqual({ ...record }, { user: 'ann', n: 5, $e: 1.5, 'a.b': { x: [1] }, '': 'empty key', hostile: { ok: 1 } })
    assert.deepEqual({ ...recordOf({ _id: 'x', expiresAt: at(NOW) }) }, {}, 'a live document without data is an empty session')
    assert.throws(() => recordOf({ _id: 'x', data: { odd: { not: 'written by MongoStore' } } }), /data\.odd holding a object, which it never writes/)
  })

  it('matches live sessions only, and names expired ones (or ones without a valid expiresAt) for removal', () => {
    assert.deepEqual(liveFilter('koa:sess:a', NOW), { _id: 'koa:sess:a', expiresAt: { $gt: at(NOW) } })
    assert.deepEqual(expiredFilter('koa:sess:a', NOW), { _id: 'koa:sess:a', expiresAt: { $not: { $gt: at(NOW) } } })
  })

  it('builds the conditional filter from the stored form of each expected value, absent as $exists: false', () => {
    assert.deepEqual(expectFilter('s', { cart: [1], n: 3, 'a.b': 'x', gone: undefined, $e: 5 }, NOW), {
      _id: 's',
      expiresAt: { $gt: at(NOW) },
      'data.cart': { $eq: '[1]' },
      'data.n': { $eq: 3 },
      'data.a%2Eb': { $eq: '"x"' },
      'data.gone': { $exists: false },
      'data.%24e': { $eq: 5 },
    })
    assert.equal(expectsOnlyAbsence({ a: undefined, b: undefined }), true)
    assert.equal(expectsOnlyAbsence({}), true)
    assert.equal(expectsOnlyAbsence({ a: undefined, b: null }), false)
  })

  it('patches with $set of changed keys and the expiry, $unset of removed keys, nothing else', () => {
    assert.deepEqual(patchUpdate({ set: { user: 'ann', n: 2, $e: NOW + MINUTE }, unset: ['flash', 'a.b'], ttlMs: MINUTE }, NOW), {
      $set: { 'data.user': '"ann"', 'data.n': 2, 'data.%24e': NOW + MINUTE, expiresAt: at(NOW + MINUTE) },
      $unset: { 'data.flash': '', 'data.a%2Eb': '' },
    })
    assert.deepEqual(patchUpdate({ ttlMs: 1.2 }, NOW), { $set: { expiresAt: at(NOW + 2) } }, 'expiry rounded up, never early')
    assert.deepEqual(
      patchUpdate({ set: { a: 1, b: undefined }, unset: ['a'], ttlMs: MINUTE }, NOW),
      { $set: { expiresAt: at(NOW + MINUTE) }, $unset: { 'data.a': '', 'data.b': '' } },
      'a key both set and unset is unset (as the other stores end up); an undefined value is removed',
    )
    // The middleware hands over the texts it made for the size check; numbers stay numbers.
    assert.deepEqual(
      patchUpdate({ set: { user: 'ann', n: 2 }, ttlMs: MINUTE, [ENCODED]: { user: '"made once"', n: '2' } }, NOW).$set,
      { 'data.user': '"made once"', 'data.n': 2, expiresAt: at(NOW + MINUTE) },
    )
  })

  it('creates a session only from a patch that writes a key', () => {
    assert.equal(createsSession({ set: { a: 1 }, ttlMs: 1 }), true)
    assert.equal(createsSession({ ttlMs: 1 }), false)
    assert.equal(createsSession({ set: {}, unset: ['a'], ttlMs: 1 }), false)
    assert.equal(createsSession({ set: { a: 1 }, unset: ['a'], ttlMs: 1 }), false)
    assert.equal(createsSession({ set: { a: undefined }, ttlMs: 1 }), false)
  })

  it('increments with $inc and the expiry, touches with the expiry only, and reads the sum back', () => {
    assert.deepEqual(incrementUpdate('$n', 2.5, MINUTE, NOW), { $inc: { 'data.%24n': 2.5 }, $set: { expiresAt: at(NOW + MINUTE) } })
    assert.deepEqual(touchUpdate(MINUTE, NOW), { $set: { expiresAt: at(NOW + MINUTE) } })
    assert.deepEqual(projectionOf('a.b'), { 'data.a%2Eb': 1 })
    assert.equal(sumOf({ _id: 's', data: { 'a%2Eb': 7 } }, 'a.b'), 7)
    assert.throws(() => sumOf(null, 'n'), /answered the increment of "n" with undefined/)
  })
})

describe('MongoStore: options', () => {
  it('needs exactly one of url, client or collection, and names what is wrong', () => {
    const make = (options: unknown) => () => new MongoStore(options as ConstructorParameters<typeof MongoStore>[0])
    assert.throws(make({}), /exactly one of the options url, client or collection, got none/)
    assert.throws(make(null), /options must be an object/)
    assert.throws(make({ url: 'mongodb://x', collection: {} }), /got several/)
    assert.throws(make({ url: 'redis://x' }), /option url must be a mongodb:\/\/ or mongodb\+srv:\/\/ URL/)
    assert.throws(make({ url: 'mongodb://x', prefix: 'p:' }), /option prefix is unknown/)
    assert.throws(make({ url: 'mongodb://x', timeoutMs: 0 }), /option timeoutMs must be a number of milliseconds/)
    assert.throws(make({ url: 'mongodb://x', collectionName: '' }), /option collectionName must be a non-empty string/)
    assert.throws(make({ url: 'mongodb://x', dbName: 3 }), /option dbName must be a non-empty string/)
    assert.throws(make({ client: {} }), /option client must be a MongoClient/)
    assert.throws(make({ client: { db() {} }, clientOptions: {} }), /client cannot be combined with clientOptions/)
    assert.throws(make({ collection: { findOne() {} } }), /option collection must be a Collection/)
    assert.throws(make({ collection: {}, dbName: 'x' }), /collection cannot be combined with dbName/)
  })

  it('names no session id when an _id stays taken (the message reaches logs, where an id is a credential)', async () => {
    const duplicate = Object.assign(new Error('E11000 duplicate key error'), { code: 11000 })
    const collection = {
      findOne: async () => null,
      updateOne: async () => Promise.reject(duplicate),
      findOneAndUpdate: async () => Promise.reject(duplicate),
      deleteOne: async () => ({ deletedCount: 0 }),
    }
    const store = new MongoStore({ collection } as unknown as ConstructorParameters<typeof MongoStore>[0])
    const id = 'koa:sess:SecretSessionId_0123456789'
    await assert.rejects(store.apply(id, { set: { a: 1 }, ttlMs: MINUTE }), (error: Error) => {
      assert.match(error.message, /MongoStore could not write a session: its _id stayed taken/)
      assert.ok(!error.message.includes('SecretSessionId'), error.message)
      return true
    })
  })

  it('connects from url only when first used, and close() before that is fine', async () => {
    const store = new MongoStore({ url: 'mongodb://127.0.0.1:1/never' })
    await store.close()
    await assert.rejects(store.get('x'), /MongoStore was closed/)
  })

  it('fails an operation on an unreachable server within timeoutMs', async () => {
    const store = new MongoStore({ url: 'mongodb://127.0.0.1:1/never', timeoutMs: 300 })
    const started = Date.now()
    await assert.rejects(store.apply('x', { set: { a: 1 }, ttlMs: MINUTE }))
    assert.ok(Date.now() - started < 1_500, `took ${Date.now() - started} ms`)
    await store.close()
  })

  it('loads from import and from require without loading the driver', { skip: BUILT }, () => {
    const load = (args: string[]) => execFileSync(process.execPath, args, { encoding: 'utf8' }).trim()
    const driverFiles = "Object.keys(require.cache).filter((f) => /node_modules[\\\\/]mongodb[\\\\/]/.test(f)).length"
    assert.equal(load(['-e', `const m = require('koa-atomic-session/mongodb'); console.log(typeof m.MongoStore, ${driverFiles})`]), 'function 0')
    assert.equal(load(['--input-type=module', '-e', "const m = await import('koa-atomic-session/mongodb'); console.log(typeof m.MongoStore)"]), 'function')
  })

  it('loads without the driver installed, and says how to install it when it must open a connection', { skip: BUILT }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'no-mongodb-'))
    try {
      const pkg = join(dir, 'node_modules', 'koa-atomic-session')
      cpSync('dist', join(pkg, 'dist'), { recursive: true })
      cpSync('package.json', join(pkg, 'package.json'))
      const script = join(dir, 'try.mjs')
      writeFileSync(
        script,
        "import { MongoStore } from 'koa-atomic-session/mongodb'\n" +
          "const store = new MongoStore({ url: 'mongodb://127.0.0.1:1' })\n" +
          'try { await store.get("x"); console.log("no error") } catch (error) { console.log(error.message) }\n',
      )
      const output = execFileSync(process.execPath, [script], { cwd: dir, encoding: 'utf8' })
      assert.match(output, /install it \(npm install mongodb\), or pass your own client or collection/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

/**
 * Type test (compiled by tsc, never called): the ways users build the store type-check with the
 * driver's own types, a collection of the driver's default Document type included.
 */
export function typeTest(client: MongoClient): MongoStore[] {
  return [
    new MongoStore({ url: 'mongodb://127.0.0.1:27017', dbName: 'app', collectionName: 'sessions', clientOptions: { maxPoolSize: 5 } }),
    new MongoStore({ client, dbName: 'app' }),
    new MongoStore({ collection: client.db('app').collection('sessions') }),
    new MongoStore({ collection: client.db('app').collection<MongoSessionDocument>('sessions'), timeoutMs: 500 }),
  ]
}

/** The shared contract, then what only MongoStore does, on one backend. */
function mongoStoreSuite(open: () => Promise<MongoBackend>): void {
  let backend: MongoBackend
  const fresh = () => `koa:sess:${randomUUID()}`
  /** A store on a new collection, and the raw view of that collection. */
  const make = async () => {
    const { collection, raw } = await backend.collection()
    const store = new MongoStore({ collection })
    await store.ensureIndex()
    backend.takeCommands()
    return { store, raw }
  }

  before(async () => {
    backend = await open()
  })
  after(async () => {
    await backend?.close()
  })

  // $inc cannot refuse a sum past the largest double in the same step (see the README's MongoDB section).
  storeContract('MongoStore', async () => ({ store: (await make()).store }), { finiteIncrement: false })

  describe('MongoStore', () => {
    let store: MongoStore
    let raw: RawCollection
    before(async () => {
      ;({ store, raw } = await make())
    })

    it('stores one document per session: { _id, data, expiresAt }, numbers native, other values as JSON text', async () => {
      const id = fresh()
      const before = Date.now()
      await store.apply(id, { set: { user: 'ann', n: 3, cart: { items: [1] }, $e: 1_700_000_000_000 }, ttlMs: MINUTE })
      const document = await raw.findOne({ _id: id })
      assert.deepEqual(Object.keys(document ?? {}).sort(), ['_id', 'data', 'expiresAt'])
      assert.deepEqual(document?.data, { user: '"ann"', n: 3, cart: '{"items":[1]}', '%24e': 1_700_000_000_000 })
      const expiresAt = document?.expiresAt as Date
      assert.ok(expiresAt instanceof Date && expiresAt.getTime() >= before + MINUTE && expiresAt.getTime() <= Date.now() + MINUTE + 1)
    })

    it('round-trips keys MongoDB treats specially, at the top level and inside values', async () => {
      const id = fresh()
      const keys = ['$c', '$e', '$m', '$u', '$x', '$w', '$r', 'a.b', '.', '$', '%', '%24', '', 'nul\u0000', '_id', 'x.$y']
      const set: Record<string, unknown> = {}
      keys.forEach((key, i) => (set[key] = i))
      set.nested = { 'a.b': { $gt: 1, '': [{ '.': '\u0000' }] } }
      await store.apply(id, { set, ttlMs: MINUTE })
      assert.deepEqual({ ...(await store.get(id)) }, set)
      await store.apply(id, { unset: ['a.b', '$c', ''], ttlMs: MINUTE })
      const after = { ...(await store.get(id)) }
      assert.deepEqual(Object.keys(after).sort(), keys.filter((key) => !['a.b', '$c', ''].includes(key)).concat('nested').sort())
      assert.equal(await store.increment(id, 'x.$y', 1, MINUTE), keys.indexOf('x.$y') + 1)
      assert.equal(await store.applyIf(id, { set: { '$': 'won' }, expect: { '$': keys.indexOf('$'), 'a.b': undefined }, ttlMs: MINUTE }), true)
      assert.equal((await store.get(id))?.$, 'won')
    })

    it('ensureIndex() creates the TTL index on expiresAt, and calling it again changes nothing', async () => {
      const { collection, raw: fresh } = await backend.collection()
      const own = new MongoStore({ collection })
      const name = await own.ensureIndex()
      assert.equal(await own.ensureIndex(), name)
      const ttl = (await fresh.indexes()).filter((index) => 'expiresAt' in index.key)
      assert.deepEqual(ttl.map((index) => [index.key, index.expireAfterSeconds]), [[{ expiresAt: 1 }, 0]])
    })

    it('ensureIndex() explains an index on expiresAt with other options', async () => {
      const { collection, raw: fresh } = await backend.collection()
      await fresh.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 3600 })
      await assert.rejects(new MongoStore({ collection }).ensureIndex(), /already has an index on expiresAt with other options/)
    })

    it('ignores an expired document that the TTL monitor has not removed yet, and touch does not revive it', async () => {
      const id = fresh()
      const expiresAt = new Date(Date.now() - 1_000)
      await raw.insertOne({ _id: id, data: { a: '"old"' }, expiresAt })
      assert.equal(await store.get(id), undefined)
      await store.touch(id, MINUTE)
      assert.deepEqual((await raw.findOne({ _id: id }))?.expiresAt, expiresAt)
      await store.apply(id, { unset: ['a'], ttlMs: MINUTE })
      assert.equal(await store.get(id), undefined, 'a patch that only removes keys does not create a session')
    })

    for (const [name, write] of [
      ['apply', (s: MongoStore, id: string) => s.apply(id, { set: { b: 2 }, ttlMs: MINUTE })],
      ['increment', (s: MongoStore, id: string) => s.increment(id, 'b', 2, MINUTE)],
      ['applyIf expecting absence', (s: MongoStore, id: string) => s.applyIf(id, { set: { b: 2 }, expect: { a: undefined }, ttlMs: MINUTE })],
    ] as const) {
      it(`${name} on an expired, unremoved document starts a fresh session: no old key comes back`, async () => {
        const id = fresh()
        await raw.insertOne({ _id: id, data: { a: '"old"', n: 1 }, expiresAt: new Date(Date.now() - 1_000) })
        await write(store, id)
        assert.deepEqual({ ...(await store.get(id)) }, { b: 2 })
        assert.deepEqual(Object.keys((await raw.findOne({ _id: id }))?.data as object), ['b'])
      })
    }

    it('applyIf expecting a value never matches an expired document', async () => {
      const id = fresh()
      await raw.insertOne({ _id: id, data: { a: '"old"' }, expiresAt: new Date(Date.now() - 1_000) })
      assert.equal(await store.applyIf(id, { set: { a: 'new' }, expect: { a: 'old' }, ttlMs: MINUTE }), false)
      assert.equal(await store.get(id), undefined)
    })

    it('applyIf: an upsert meeting the live session that holds the key is a conflict, not a second document', async () => {
      const id = fresh()
      await store.apply(id, { set: { a: 1 }, ttlMs: MINUTE })
      backend.takeCommands()
      assert.equal(await store.applyIf(id, { set: { a: 2 }, expect: { a: undefined }, ttlMs: MINUTE }), false)
      assert.deepEqual(backend.takeCommands(), ['update', 'delete', 'update'])
      assert.deepEqual({ ...(await store.get(id)) }, { a: 1 })
    })

    it('applyIf expecting only absence with nothing to set: true unless a live session holds the key', async () => {
      const [live, missing] = [fresh(), fresh()]
      await store.apply(live, { set: { a: 1 }, ttlMs: MINUTE })
      assert.equal(await store.applyIf(missing, { unset: ['a'], expect: { a: undefined }, ttlMs: MINUTE }), true)
      assert.equal(await store.get(missing), undefined, 'and it creates nothing')
      assert.equal(await store.applyIf(live, { unset: ['b'], expect: { b: undefined }, ttlMs: MINUTE }), true)
      assert.equal(await store.applyIf(live, { unset: ['a'], expect: { a: undefined }, ttlMs: MINUTE }), false)
      assert.deepEqual({ ...(await store.get(live)) }, { a: 1 })
    })

    it('compares as the JSON encoding does: key order in nested objects counts, number types do not', async () => {
      const id = fresh()
      await store.apply(id, { set: { o: { a: 1, b: 2 }, n: 2 ** 31 + 0.5, i: 7 }, ttlMs: MINUTE })
      assert.equal(await store.applyIf(id, { set: { o: 0 }, expect: { o: { b: 2, a: 1 } }, ttlMs: MINUTE }), false)
      assert.equal(await store.applyIf(id, { set: { i: 8 }, expect: { i: '7' }, ttlMs: MINUTE }), false)
      assert.equal(await store.applyIf(id, { set: { o: 1 }, expect: { o: { a: 1, b: 2 }, n: 2 ** 31 + 0.5 }, ttlMs: MINUTE }), true)
      await store.increment(id, 'i', 0.5, MINUTE) // 7 (int32) + 0.5: a double now
      await store.increment(id, 'i', 0.5, MINUTE) // 8, stored as a double
      assert.equal(await store.applyIf(id, { set: { i: 'eight' }, expect: { i: 8 }, ttlMs: MINUTE }), true)
    })

    it('increment refuses a non-number and changes nothing, the expiry included', async () => {
      const id = fresh()
      await store.apply(id, { set: { name: 'ann', list: [1], no: null }, ttlMs: MINUTE })
      const before = await raw.findOne({ _id: id })
      for (const key of ['name', 'list', 'no']) {
        await assert.rejects(store.increment(id, key, 1, 2 * MINUTE), (error: unknown) => {
          assert.ok(error instanceof SessionValueError)
          assert.match(error.message, /does not hold a number/)
          return true
        })
      }
      assert.deepEqual(await raw.findOne({ _id: id }), before)
    })

    it('increment keeps integers exact past 32 bits, and adds floats', async () => {
      const id = fresh()
      assert.equal(await store.increment(id, 'n', 2 ** 31 - 1, MINUTE), 2 ** 31 - 1)
      assert.equal(await store.increment(id, 'n', 2 ** 31 - 1, MINUTE), 2 ** 32 - 2)
      assert.equal(await store.increment(id, 'n', 2 ** 40, MINUTE), 2 ** 40 + 2 ** 32 - 2)
      assert.equal(await store.increment(id, 'n', 0.5, MINUTE), 2 ** 40 + 2 ** 32 - 1.5)
      assert.equal((await store.get(id))?.n, 2 ** 40 + 2 ** 32 - 1.5)
    })

    it('sends one command per operation when sessions are live or missing', async () => {
      const id = fresh()
      backend.takeCommands()
      await store.apply(id, { set: { a: 1 }, ttlMs: MINUTE })
      await store.get(id)
      await store.apply(id, { set: { b: 1 }, unset: ['a'], ttlMs: MINUTE })
      await store.increment(id, 'n', 1, MINUTE)
      await store.applyIf(id, { set: { b: 2 }, expect: { b: 1 }, ttlMs: MINUTE })
      await store.touch(id, MINUTE)
      await store.destroy(id)
      assert.deepEqual(backend.takeCommands(), ['update', 'find', 'update', 'findAndModify', 'update', 'update', 'delete'])
    })

    it('keeps every write when many writers race to create one session', async () => {
      const id = fresh()
      await Promise.all([
        ...Array.from({ length: 10 }, (_, i) => store.apply(id, { set: { [`k${i}`]: i }, ttlMs: MINUTE })),
        ...Array.from({ length: 10 }, () => store.increment(id, 'n', 1, MINUTE)),
        store.applyIf(id, { set: { once: true }, expect: { once: undefined }, ttlMs: MINUTE }),
        store.applyIf(id, { set: { once: true }, expect: { once: undefined }, ttlMs: MINUTE }),
      ])
      const record = await store.get(id)
      assert.equal(record?.n, 10)
      assert.equal(record?.once, true)
      for (let i = 0; i < 10; i++) assert.equal(record?.[`k${i}`], i)
    })
  })

  describe('MongoStore with its own connection', () => {
    it('opens a client from url, uses dbName and collectionName, and close() closes only its own', async (t) => {
      if (!backend.url || !backend.client) return t.skip('needs a real server (MONGODB_URL)')
      const dbName = `koa_atomic_session_own_${randomUUID().slice(0, 8)}`
      const store = new MongoStore({ url: backend.url, dbName, collectionName: 'own' })
      try {
        await store.ensureIndex()
        const id = fresh()
        await store.apply(id, { set: { a: 1 }, ttlMs: MINUTE })
        assert.deepEqual(await backend.client.db(dbName).collection('own').findOne({ _id: id as never }, { projection: { data: 1 } }), { _id: id, data: { a: 1 } })
      } finally {
        await store.close()
        await backend.client.db(dbName).dropDatabase()
      }
      await assert.rejects(store.get('x'), /MongoStore was closed/)
      const shared = new MongoStore({ client: backend.client, dbName: `koa_atomic_session_own_${randomUUID().slice(0, 8)}` })
      await shared.close()
      assert.equal(await shared.get('x'), undefined, 'a given client stays open')
    })
  })
}

describe(`MongoStore on ${imitationBackend().label}`, () => mongoStoreSuite(async () => imitationBackend()))

describe('MongoStore on a real MongoDB server (MONGODB_URL)', { skip: REAL_SERVER_SKIP }, () => {
  mongoStoreSuite(() => realBackend(MONGODB_URL as string))
  it('expires sessions through the TTL monitor too (the document itself goes within about a minute)', { skip: process.env.MONGODB_TTL_WAIT ? false : 'set MONGODB_TTL_WAIT=1 to wait up to 70 s for the TTL monitor' }, async () => {
    const backend = await realBackend(MONGODB_URL as string)
    try {
      const { collection, raw } = await backend.collection()
      const store = new MongoStore({ collection })
      await store.ensureIndex()
      await store.apply('koa:sess:ttl', { set: { a: 1 }, ttlMs: 100 })
      const deadline = Date.now() + 70_000
      while ((await raw.findOne({ _id: 'koa:sess:ttl' })) !== null) {
        assert.ok(Date.now() < deadline, 'the TTL monitor did not remove the expired document within 70 s')
        await sleep(1_000)
      }
    } finally {
      await backend.close()
    }
  })
})

// A skipped suite is not counted among skipped tests by node:test's summary; this line is, so
// "skipped 1" in the totals says that the real-server suites did not run.
if (REAL_SERVER_SKIP) it('MongoStore suites on a real MongoDB server', { skip: REAL_SERVER_SKIP }, () => {})
