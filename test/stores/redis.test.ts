/**
 * RedisStore on real redis-server processes, as a matrix over the two clients: the shared Store
 * contract on a single node and through a 3-master Cluster, then what only Redis does (layout,
 * TTLs under races, both clients on one data set, timeouts, close, option checks).
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { Cluster, Redis } from 'ioredis'
import { createClient, createCluster, createSentinel } from 'redis'
import { SessionValueError } from '../../src/errors.js'
import { FIELDS_LENGTH } from '../../src/store.js'
import { RedisStore, type RedisStoreOptions } from '../../src/stores/redis/index.js'
import { storeContract } from '../contract/store-contract.js'
import {
  freePort,
  SENTINEL_MASTER,
  startCluster,
  startRedis,
  startSentinel,
  type RedisCluster,
  type RedisServer,
} from '../helpers/redis-server.js'

type Client = NonNullable<RedisStoreOptions['client']>
interface Connected {
  client: Client
  close(): Promise<void>
}
interface ClientKind {
  name: 'ioredis' | 'node-redis'
  single(url: string): Promise<Connected>
  cluster(nodes: RedisCluster['addresses']): Promise<Connected>
}

const ioredis: ClientKind = {
  name: 'ioredis',
  async single(url) {
    const client = new Redis(url)
    client.on('error', () => undefined) // outages are part of these tests
    return { client, close: async () => client.disconnect() }
  },
  async cluster(nodes) {
    const client = new Cluster(nodes)
    client.on('error', () => undefined)
    return { client, close: async () => client.disconnect() }
  },
}

const nodeRedis: ClientKind = {
  name: 'node-redis',
  async single(url) {
    const client = await createClient({ url }).on('error', () => undefined).connect()
    return { client, close: async () => client.destroy() }
  },
  async cluster(nodes) {
    const rootNodes = nodes.map(({ host, port }) => ({ url: `redis://${host}:${port}` }))
    const client = await createCluster({ rootNodes }).on('error', () => undefined).connect()
    return { client, close: async () => client.destroy() }
  },
}

const CLIENTS = [ioredis, nodeRedis]
const MINUTE = 60_000

let single: RedisServer
let sentinel: RedisServer
let cluster: RedisCluster
/** A plain connection for looking at what the store wrote. */
let raw: Redis

before(async () => {
  ;[single, cluster] = await Promise.all([startRedis(), startCluster()])
  sentinel = await startSentinel(single)
  raw = new Redis(single.url)
})
after(async () => {
  raw?.disconnect()
  await Promise.all([single?.close(), sentinel?.close(), cluster?.close()])
})

storeContract('RedisStore, own ioredis connection from url', async () => {
  const store = new RedisStore({ url: single.url })
  return { store, close: () => store.close() }
})
storeContract('RedisStore, own ioredis connection through Sentinel (sentinels + name)', async () => {
  const store = new RedisStore({ sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: SENTINEL_MASTER })
  return { store, close: () => store.close() }
})
storeContract('RedisStore on a node-redis Sentinel (createSentinel)', async () => {
  const sentinelRootNodes = [{ host: '127.0.0.1', port: sentinel.port }]
  const client = await createSentinel({ name: SENTINEL_MASTER, sentinelRootNodes }).on('error', () => undefined).connect()
  return { store: new RedisStore({ client }), close: async () => client.destroy() }
})
for (const kind of CLIENTS) {
  storeContract(`RedisStore on a ${kind.name} client`, async () => {
    const { client, close } = await kind.single(single.url)
    return { store: new RedisStore({ client }), close }
  })
  storeContract(`RedisStore on a ${kind.name} Cluster (3 masters)`, async () => {
    const { client, close } = await kind.cluster(cluster.addresses)
    return { store: new RedisStore({ client }), close }
  })
}

for (const kind of CLIENTS) {
  describe(`RedisStore on ${kind.name}: layout and expiry`, () => {
    let connection: Connected
    let store: RedisStore
    before(async () => {
      connection = await kind.single(single.url)
      store = new RedisStore({ client: connection.client, prefix: `${kind.name}:` })
    })
    after(() => connection.close())
    const fresh = () => `koa:sess:${randomUUID()}`

    it('keeps a session in one hash at exactly prefix + id, one JSON-encoded field per top-level key', async () => {
      const id = fresh()
      const session = { user: 'ann', cart: { items: [1, 2] }, n: 5, off: false, none: null, $e: 1234 }
      await store.apply(id, { set: session, ttlMs: MINUTE })
      assert.deepEqual(await raw.keys(`${kind.name}:${id}*`), [`${kind.name}:${id}`])
      assert.equal(await raw.type(`${kind.name}:${id}`), 'hash')
      assert.deepEqual(await raw.hgetall(`${kind.name}:${id}`), {
        user: '"ann"',
        cart: '{"items":[1,2]}',
        n: '5',
        off: 'false',
        none: 'null',
        $e: '1234',
      })
    })

    it('hands out the fields with their exact length (FIELDS_LENGTH), so the size check of a write walks none of them', async () => {
      const id = fresh()
      await store.apply(id, { set: { user: 'ann', cart: { items: [1, 2] }, note: 'é✓' }, ttlMs: MINUTE })
      const fields = (await store.getEncoded(id)) as Record<string, string> & { [FIELDS_LENGTH]?: number }
      const expected = Object.entries(fields).reduce((sum, [key, text]) => sum + key.length + text.length + 4, 0)
      assert.equal(fields[FIELDS_LENGTH], expected)
    })

    it('gives every kind of write a TTL', async () => {
      const id = fresh()
      const key = `${kind.name}:${id}`
      const pttl = async () => raw.pttl(key)
      await store.apply(id, { set: { a: 1, b: 2 }, ttlMs: 50_000 })
      assert.ok((await pttl()) > 40_000)
      await store.apply(id, { unset: ['a'], ttlMs: 51_000 })
      assert.ok((await pttl()) > 50_000)
      await store.increment(id, 'n', 1, 52_000)
      assert.ok((await pttl()) > 51_000)
      await store.applyIf(id, { set: { c: 3 }, expect: { b: 2 }, ttlMs: 53_000 })
      assert.ok((await pttl()) > 52_000)
      await store.touch(id, 54_000)
      assert.ok((await pttl()) > 53_000)
      assert.deepEqual(await raw.hgetall(key), { b: '2', n: '1', c: '3' })
      const counter = fresh()
      await store.increment(counter, 'n', 1, 55_000) // creates the hash and its TTL in one step
      assert.ok((await raw.pttl(`${kind.name}:${counter}`)) > 54_000)
    })

    it('never leaves a hash without a TTL when writes race with destroy and expiry', async () => {
      const ids = Array.from({ length: 4 }, fresh)
      const pending: Array<Promise<unknown>> = []
      for (let i = 0; i < 600; i++) {
        const id = ids[i % ids.length] as string
        const ttlMs = i % 3 === 0 ? 1 + (i % 4) : MINUTE // some lapse while others are in flight
        switch (i % 6) {
          case 0:
          case 1:
            pending.push(store.apply(id, { set: { [`k${i}`]: i }, ttlMs }))
            break
          case 2:
            pending.push(store.destroy(id))
            break
          case 3:
            pending.push(store.increment(id, 'n', 1, ttlMs))
            break
          case 4:
            pending.push(store.applyIf(id, { set: { c: i }, unset: ['k0'], expect: {}, ttlMs }))
            break
          default:
            pending.push(store.apply(id, { unset: [`k${i - 5}`, `k${i - 4}`], ttlMs }))
        }
        if (i % 100 === 0) await sleep(3)
      }
      await Promise.all(pending)
      const keys = await raw.keys(`${kind.name}:*`)
      assert.ok(keys.length > 0)
      for (const key of keys) {
        const pttl = await raw.pttl(key)
        // -1 is "no expiry"; -2 (gone by now) and 0 (expiring this millisecond) are both fine.
        assert.notEqual(pttl, -1, `${key} has no TTL`)
      }
    })

    it('increments a field holding a float by an integer, and a counter exactly', async () => {
      const id = fresh()
      await store.apply(id, { set: { f: 0.5, big: 1e15 }, ttlMs: MINUTE })
      assert.equal(await store.increment(id, 'f', 1, MINUTE), 1.5)
      assert.equal(await store.increment(id, 'f', -3, MINUTE), -1.5)
      assert.equal(await store.increment(id, 'big', 1, MINUTE), 1e15 + 1)
      assert.deepEqual(await raw.hmget(`${kind.name}:${id}`, 'f', 'big'), ['-1.5', '1000000000000001'])
      assert.deepEqual({ ...(await store.get(id)) }, { f: -1.5, big: 1e15 + 1 })
    })

    it("says so when another program left something other than a hash at a session's key", async () => {
      await raw.set(`${kind.name}:taken`, 'a string')
      await assert.rejects(store.get('taken'), /HGETALL found something other than a session hash at the session's key: another program/)
      await assert.rejects(store.apply('taken', { set: { a: 1 }, ttlMs: MINUTE }), /give the sessions a prefix of their own/)
    })

    it('refuses to increment a non-number without changing anything, expiry included', async () => {
      const id = fresh()
      await store.apply(id, { set: { name: 'ann', flag: true, list: [1] }, ttlMs: 10_000 })
      for (const field of ['name', 'flag', 'list']) {
        await assert.rejects(store.increment(id, field, 1, MINUTE), (error: unknown) => {
          assert.ok(error instanceof SessionValueError)
          assert.match(error.message, new RegExp(`"${field}".*does not hold a number`))
          return true
        })
      }
      assert.deepEqual(await raw.hgetall(`${kind.name}:${id}`), { name: '"ann"', flag: 'true', list: '[1]' })
      assert.ok((await raw.pttl(`${kind.name}:${id}`)) <= 10_000)
    })

    it('writes and checks many keys at once (Lua argument chunks)', async () => {
      const id = fresh()
      const set: Record<string, number> = {}
      for (let i = 0; i < 1500; i++) set[`k${i}`] = i
      assert.equal(await store.applyIf(id, { set, expect: { k0: undefined }, ttlMs: MINUTE }), true)
      const unset = Array.from({ length: 1400 }, (_, i) => `k${i}`)
      assert.equal(await store.applyIf(id, { unset, expect: { k0: 0, k1499: 1499 }, ttlMs: MINUTE }), true)
      assert.equal(Object.keys((await store.get(id)) ?? {}).length, 100)
      await store.apply(id, { set, ttlMs: MINUTE })
      assert.equal(await raw.hlen(`${kind.name}:${id}`), 1500)
    })

    it('sends the script again after the server forgot it (NOSCRIPT)', async () => {
      const id = fresh()
      await store.increment(id, 'n', 1, MINUTE)
      await raw.script('FLUSH')
      assert.equal(await store.increment(id, 'n', 1, MINUTE), 2)
      await raw.script('FLUSH')
      assert.equal(await store.applyIf(id, { set: { a: 1 }, expect: { n: 2 }, ttlMs: MINUTE }), true)
    })
  })
}

describe('RedisStore: one data set, both clients', () => {
  const connections: Connected[] = []
  let viaIoredis: RedisStore
  let viaNodeRedis: RedisStore
  before(async () => {
    connections.push(await ioredis.single(single.url), await nodeRedis.single(single.url))
    viaIoredis = new RedisStore({ client: (connections[0] as Connected).client })
    viaNodeRedis = new RedisStore({ client: (connections[1] as Connected).client })
  })
  after(() => Promise.all(connections.map((connection) => connection.close())))

  it('reads through one client what the other wrote', async () => {
    const id = `both:${randomUUID()}`
    const data = { user: { name: 'ann', roles: ['admin'] }, text: 'grüße "x"', n: 1.25 }
    await viaIoredis.apply(id, { set: data, ttlMs: MINUTE })
    assert.deepEqual({ ...(await viaNodeRedis.get(id)) }, data)
    assert.equal(await viaNodeRedis.increment(id, 'n', 1, MINUTE), 2.25)
    await viaNodeRedis.apply(id, { set: { extra: [1] }, unset: ['text'], ttlMs: MINUTE })
    assert.deepEqual({ ...(await viaIoredis.get(id)) }, { user: data.user, n: 2.25, extra: [1] })
    assert.equal(await viaIoredis.applyIf(id, { set: { n: 0 }, expect: { extra: [1], text: undefined }, ttlMs: MINUTE }), true)
    assert.equal((await viaNodeRedis.get(id))?.n, 0)
  })
})

describe('RedisStore: timeoutMs bounds every operation', () => {
  let server: RedisServer
  before(async () => {
    server = await startRedis()
  })
  after(() => server.close())

  /** Asserts that `operation` rejects as unreachable within `timeoutMs` plus a little slack. */
  async function bounded(operation: Promise<unknown>, timeoutMs: number): Promise<void> {
    const started = Date.now()
    await assert.rejects(operation, /Redis session store unreachable/)
    const elapsed = Date.now() - started
    assert.ok(elapsed <= timeoutMs + 250, `took ${elapsed} ms with timeoutMs ${timeoutMs}`)
  }

  it("says, when it times out, why its own connection is not ready: a refused password", async () => {
    await server.cli('config', 'set', 'requirepass', 'right')
    try {
      const store = new RedisStore({ url: server.url.replace('redis://', 'redis://:wrong@'), timeoutMs: 300 })
      await assert.rejects(store.get('x'), /no reply to HGETALL within 300 ms \(the connection's last error: WRONGPASS/)
      await store.close()
    } finally {
      await server.cli('-a', 'right', 'config', 'set', 'requirepass', '')
    }
  })

  it('refuses to go on in db 0 when Redis refuses the database it was given', async () => {
    const store = new RedisStore({ url: server.url, db: 999, timeoutMs: 500 })
    await assert.rejects(store.apply('db', { set: { a: 1 }, ttlMs: MINUTE }), /Redis refused the database RedisStore was given \(option db, or the \/db of url\): ERR DB index is out of range/)
    assert.equal((await server.cli('exists', 'db')).trim(), '0')
    await store.close()
  })

  it('rejects when nothing listens where the store connects itself', async () => {
    const store = new RedisStore({ url: `redis://127.0.0.1:${await freePort()}`, timeoutMs: 300 })
    const started = Date.now()
    await assert.rejects(store.get('x'), /Redis session store unreachable: no reply to HGETALL within 300 ms/)
    assert.ok(Date.now() - started >= 290)
    await bounded(store.apply('x', { set: { a: 1 }, ttlMs: MINUTE }), 300)
    await store.close()
  })

  for (const kind of CLIENTS) {
    it(`rejects on a ${kind.name} client while Redis answers nothing, and works again after`, async () => {
      const { client, close } = await kind.single(server.url)
      const store = new RedisStore({ client, timeoutMs: 300 })
      await store.apply('paused', { set: { a: 1 }, ttlMs: MINUTE })
      await server.cli('client', 'pause', '1000', 'ALL')
      await bounded(store.get('paused'), 300)
      await sleep(800)
      assert.deepEqual({ ...(await store.get('paused')) }, { a: 1 })
      await close()
    })

    it(`rejects on a ${kind.name} client while Redis is down, and recovers when it is back`, async () => {
      const { client, close } = await kind.single(server.url)
      const store = new RedisStore({ client, timeoutMs: 300 })
      await store.apply('outage', { set: { a: 1 }, ttlMs: MINUTE })
      await server.stop('SIGKILL')
      await bounded(store.get('outage'), 300)
      await bounded(store.increment('outage', 'n', 1, MINUTE), 300)
      await server.restart()
      const deadline = Date.now() + 8000
      for (;;) {
        try {
          await store.apply('outage', { set: { back: true }, ttlMs: MINUTE })
          break
        } catch (error) {
          if (Date.now() > deadline) throw error
        }
      }
      assert.deepEqual({ ...(await store.get('outage')) }, { back: true })
      await close()
    })
  }
})

describe('RedisStore: close() and options', () => {
  const clientCount = async () => String(await raw.client('LIST')).trim().split('\n').length

  it('closes the connection it opened itself, and cannot be used after', async () => {
    const store = new RedisStore({ url: single.url })
    await store.get('x')
    const before = await clientCount()
    await store.close()
    await sleep(50)
    assert.equal(await clientCount(), before - 1)
    await assert.rejects(store.get('x'), /RedisStore was closed/)
    await store.close()
  })

  for (const kind of CLIENTS) {
    it(`leaves a ${kind.name} client it was given open`, async () => {
      const { client, close } = await kind.single(single.url)
      const store = new RedisStore({ client })
      await store.apply('given', { set: { a: 1 }, ttlMs: MINUTE })
      await store.close()
      assert.deepEqual({ ...(await store.get('given')) }, { a: 1 })
      await close()
    })
  }

  it('refuses a node-redis client that was never connected, saying so', async () => {
    const store = new RedisStore({ client: createClient({ url: single.url }), timeoutMs: 300 })
    await assert.rejects(store.get('x'), /client is closed.*connected by its owner/)
  })

  it('refuses invalid options, naming the option', () => {
    const client = new Redis({ lazyConnect: true })
    assert.throws(() => new RedisStore({ client, url: single.url }), /option client cannot be combined with url/)
    assert.throws(() => new RedisStore({ client, host: 'h' }), /option client cannot be combined with host/)
    assert.throws(() => new RedisStore({ client: {} as Client }), /option client must be an ioredis Redis or Cluster, or a node-redis/)
    assert.throws(() => new RedisStore({ timeoutMs: 0 }), /option timeoutMs must be/)
    assert.throws(() => new RedisStore({ timeoutMs: Number.NaN }), /option timeoutMs must be/)
    assert.throws(() => new RedisStore({ prefix: 5 as unknown as string }), /option prefix must be a string/)
    assert.throws(() => new RedisStore({ url: '' }), /option url must be/)
    assert.throws(() => new RedisStore({ url: 'http://127.0.0.1:6379' }), /option url must be a redis:\/\/ or rediss:\/\/ URL/)
    assert.throws(() => new RedisStore({ url: '127.0.0.1:6379' }), /option url must be a redis:\/\/ or rediss:\/\/ URL/)
    for (const db of ['x', -1, 1.5]) assert.throws(() => new RedisStore({ db } as RedisStoreOptions), /option db must be a database number, 0 or more/)
    // Misspelt, they would go to ioredis, which ignores what it does not know.
    assert.throws(() => new RedisStore({ waitReplica: 1 } as RedisStoreOptions), /option waitReplica is unknown: did you mean waitReplicas\?/)
    assert.throws(() => new RedisStore({ timeoutMS: 500 } as RedisStoreOptions), /option timeoutMS is unknown: did you mean timeoutMs\?/)
    client.disconnect()
  })

  it('works on node-redis alone: without ioredis installed, nothing loads it', async () => {
    // A resolve hook makes `ioredis` unresolvable in a child process, as if it were not installed.
    const hook = `export async function resolve(specifier, context, next) {
      if (specifier === 'ioredis' || specifier.startsWith('ioredis/')) {
        throw Object.assign(new Error("Cannot find package 'ioredis'"), { code: 'ERR_MODULE_NOT_FOUND' })
      }
      return next(specifier, context)
    }`
    const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)})`
    const script = `
      import { createRequire } from 'node:module'
      import { createClient } from 'redis'
      const { RedisStore } = await import('./src/stores/redis/index.ts')
      const client = await createClient({ url: process.env.REDIS_URL }).connect()
      const store = new RedisStore({ client })
      await store.apply('alone', { set: { a: 1 }, ttlMs: 60000 })
      const got = { ...(await store.get('alone')) }
      const own = new RedisStore({ url: process.env.REDIS_URL, timeoutMs: 500 })
      const urlError = await own.get('alone').then(() => '', (error) => error.message)
      const direct = await import('ioredis').then(() => 'loaded', (error) => error.code)
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((path) => path.includes('/node_modules/ioredis/'))
      await client.close()
      console.log(JSON.stringify({ got, urlError, direct, loaded }))`
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '-e', script],
      { env: { ...process.env, REDIS_URL: single.url } },
    )
    const result = JSON.parse(stdout.trim().split('\n').pop() as string)
    assert.deepEqual(result.got, { a: 1 })
    assert.equal(result.direct, 'ERR_MODULE_NOT_FOUND')
    assert.deepEqual(result.loaded, [])
    assert.match(result.urlError, /could not be loaded: install it \(npm install ioredis\)/)
  })
})
