import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fromWholeObjectStore, type WholeObjectStore } from '../../src/stores/whole-object.js'
import { storeContract } from '../contract/store-contract.js'

/**
 * A koa-session style store as koa-redis behaves: whole objects, serialised, with the TTL it is
 * given (koa-session passes maxAge in milliseconds). Asynchronous, like any networked store.
 */
class KoaSessionStyleStore implements WholeObjectStore {
  readonly sessions = new Map<string, { json: string; expiresAt: number }>()

  async get(key: string): Promise<Record<string, unknown> | undefined> {
    await Promise.resolve()
    const entry = this.sessions.get(key)
    if (!entry || entry.expiresAt <= Date.now()) return undefined
    return JSON.parse(entry.json)
  }

  async set(key: string, session: Record<string, unknown>, maxAge?: number): Promise<void> {
    await Promise.resolve()
    this.sessions.set(key, { json: JSON.stringify(session), expiresAt: Date.now() + (maxAge ?? 86_400_000) })
  }

  async destroy(key: string): Promise<void> {
    this.sessions.delete(key)
  }
}

storeContract('fromWholeObjectStore', async () => ({ store: fromWholeObjectStore(new KoaSessionStyleStore()) }), {
  atomic: false,
  conditional: false,
})

describe('fromWholeObjectStore', () => {
  it('reads a session koa-session wrote: _expire and _maxAge become expiry and maxAge, not data', async () => {
    const old = new KoaSessionStyleStore()
    const expire = Date.now() + 3_600_000
    await old.set('koa:sess:abc', { user: 'ann', views: 3, _expire: expire, _maxAge: 3_600_000 })
    const record = await fromWholeObjectStore(old).get('koa:sess:abc')
    assert.deepEqual({ ...record }, { user: 'ann', views: 3, $e: expire, $m: 3_600_000 })
  })

  it('reads a koa-session browser-session ("session" maxAge) as such', async () => {
    const old = new KoaSessionStyleStore()
    await old.set('k', { a: 1, _expire: Date.now() + 60_000, _maxAge: 86_400_000, _session: true })
    assert.equal((await fromWholeObjectStore(old).get('k'))?.$m, 'session')
  })

  it('treats a koa-session object past its _expire as gone', async () => {
    const old = new KoaSessionStyleStore()
    await old.set('k', { a: 1, _expire: Date.now() - 1, _maxAge: 1000 })
    assert.equal(await fromWholeObjectStore(old).get('k'), undefined)
  })

  it('stores a migrated session in its own shape on the first write, keeping data and maxAge', async () => {
    const old = new KoaSessionStyleStore()
    await old.set('k', { a: 1, _expire: Date.now() + 60_000, _maxAge: 3_600_000 })
    const store = fromWholeObjectStore(old)
    await store.apply('k', { set: { b: 2 }, ttlMs: 3_600_000 })
    const stored = await old.get('k')
    assert.deepEqual(Object.keys(stored ?? {}).sort(), ['$e', '$m', 'a', 'b'])
    assert.equal((await store.get('k'))?.$m, 3_600_000)
  })

  it('is read-modify-write: racing patches to different keys can lose one (why the README warns)', async () => {
    const store = fromWholeObjectStore(new KoaSessionStyleStore())
    await store.apply('k', { set: { base: 1 }, ttlMs: 60_000 })
    await Promise.all([store.apply('k', { set: { a: 1 }, ttlMs: 60_000 }), store.apply('k', { set: { b: 1 }, ttlMs: 60_000 })])
    const record = await store.get('k')
    assert.ok(record?.a === undefined || record?.b === undefined, 'one of the two racing patches is expected to be lost')
  })

  it('refuses an object that is not a koa-session store', () => {
    assert.throws(() => fromWholeObjectStore({} as WholeObjectStore), /store.get must be a function/)
  })
})
