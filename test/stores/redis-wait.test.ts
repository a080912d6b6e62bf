/**
 * RedisStore's `waitReplicas` on a real master with one replica, on every kind of client: the
 * Store contract with WAIT on; one WAIT right after every write, on the write's own connection,
 * and none with the default; every write that resolved is already on the replica; a write that
 * no replica confirmed fails (503 through the middleware) with a message that says so, and
 * writes work again once the replica is back. Failover and resharding under load are in
 * test/failover/ (`npm run test:failover`).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import type { Context } from 'koa'
import { Redis } from 'ioredis'
import { createClient, createSentinel } from 'redis'
import { session } from '../../src/index.js'
import { RedisStore, type RedisStoreOptions } from '../../src/stores/redis/index.js'
import { storeContract } from '../contract/store-contract.js'
import { Client, koaApp, listen } from '../helpers/http.js'
import { parseInfo, SENTINEL_MASTER, startRedis, startReplica, startSentinel, waitUntil, type RedisServer } from '../helpers/redis-server.js'

type Wait = Pick<RedisStoreOptions, 'waitReplicas' | 'waitTimeoutMs' | 'timeoutMs'>
interface Opened {
  store: RedisStore
  close(): Promise<void>
}
interface Kind {
  name: string
  /** Whether the kind takes its own code path in the store's adapters (the slow tests run only on those). */
  distinct: boolean
  open(wait: Wait): Promise<Opened>
}

const MINUTE = 60_000
let master: RedisServer
let replica: RedisServer
let sentinel: RedisServer
/** A plain connection to the master and one to the replica, for looking at what the store did. */
let onMaster: Redis
let onReplica: Redis

const KINDS: Kind[] = [
  {
    name: 'ioredis, own connection from url',
    distinct: true,
    async open(wait) {
      const store = new RedisStore({ url: master.url, ...wait })
      return { store, close: () => store.close() }
    },
  },
  {
    name: 'ioredis, a given client',
    distinct: false,
    async open(wait) {
      const client = new Redis(master.url)
      client.on('error', () => undefined)
      return { store: new RedisStore({ client, ...wait }), close: async () => client.disconnect() }
    },
  },
  {
    name: 'node-redis, createClient',
    distinct: true,
    async open(wait) {
      const client = await createClient({ url: master.url }).on('error', () => undefined).connect()
      return { store: new RedisStore({ client, ...wait }), close: async () => client.destroy() }
    },
  },
  {
    name: 'ioredis, own connection through Sentinel',
    distinct: false,
    async open(wait) {
      const store = new RedisStore({ sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: SENTINEL_MASTER, ...wait })
      return { store, close: () => store.close() }
    },
  },
  {
    name: 'node-redis, createSentinel',
    distinct: true,
    async open(wait) {
      const sentinelRootNodes = [{ host: '127.0.0.1', port: sentinel.port }]
      const client = await createSentinel({ name: SENTINEL_MASTER, sentinelRootNodes }).on('error', () => undefined).connect()
      return { store: new RedisStore({ client, ...wait }), close: async () => client.destroy() }
    },
  },
]

before(async () => {
  master = await startRedis()
  replica = await startReplica(master)
  sentinel = await startSentinel(master)
  onMaster = new Redis(master.url)
  onReplica = new Redis(replica.url)
  onReplica.on('error', () => undefined) // the replica is stopped on purpose below
})
after(async () => {
  onMaster?.disconnect()
  onReplica?.disconnect()
  await Promise.all([sentinel?.close(), replica?.close(), master?.close()])
})

// Replicas confirm in well under a millisecond here, but this machine is shared: a generous WAIT
// timeout keeps a busy neighbour from turning a slow confirmation into a failed test. The tests
// that expect no confirmation use the default, 200 ms.
const PATIENT = { waitReplicas: 1, waitTimeoutMs: 1000 }

for (const kind of KINDS) {
  storeContract(`RedisStore with waitReplicas: 1, ${kind.name}`, () => kind.open(PATIENT))
}

/** Every write path once; returns the session's store key. */
async function everyWrite(store: RedisStore, afterEach: (step: string, key: string) => Promise<void> = async () => undefined): Promise<void> {
  const id = `wait:${randomUUID()}`
  await store.apply(id, { set: { user: 'ann', cart: [1] }, ttlMs: MINUTE })
  await afterEach('apply', id)
  await store.increment(id, 'n', 2, MINUTE)
  await afterEach('increment', id)
  assert.equal(await store.applyIf(id, { set: { cart: [1, 2] }, unset: ['user'], expect: { cart: [1] }, ttlMs: MINUTE }), true)
  await afterEach('applyIf', id)
  await store.apply(id, { unset: ['n'], ttlMs: MINUTE })
  await afterEach('apply unset', id)
  await store.apply(id, { ttlMs: 2 * MINUTE })
  await afterEach('apply expiry only', id)
  await store.touch(id, 3 * MINUTE)
  await afterEach('touch', id)
  await store.destroy(id)
  await afterEach('destroy', id)
}

/**
 * A MONITOR connection to the master that never reconnects. ioredis' own `monitor()` leaves its
 * connection reconnecting for ever when entering MONITOR fails, which kept the test process alive;
 * and it can fail when the feed's first line arrives in the same packet as MONITOR's OK ("Command
 * queue state error", seen once here with Sentinel querying the master): then it is tried again.
 */
async function openMonitor(): Promise<Redis> {
  for (let attempt = 1; ; attempt++) {
    const monitor = new Redis(master.url, { monitor: true, retryStrategy: () => null })
    try {
      await new Promise<void>((resolve, reject) => {
        monitor.once('error', reject)
        monitor.once('monitoring', () => resolve())
      })
      return monitor
    } catch (error) {
      monitor.disconnect()
      if (attempt === 3) throw error
    }
  }
}

/** What each client sent, per connection, while `work` ran (MONITOR on the master). */
async function monitored(work: () => Promise<void>): Promise<Map<string, string[][]>> {
  const monitor = await openMonitor()
  const seen = new Map<string, string[][]>()
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    // Commands a script runs show as source "lua"; MULTI's queued commands show at EXEC.
    if (source === 'lua') return
    const lines = seen.get(source) ?? []
    lines.push(args.map((arg, i) => (i === 0 ? arg.toLowerCase() : arg)))
    seen.set(source, lines)
  })
  try {
    await work()
    await sleep(50) // MONITOR's feed trails the replies
  } finally {
    monitor.disconnect()
  }
  return seen
}

/** What a write sends on its own (as opposed to inside MULTI). */
const WRITES = new Set(['exec', 'evalsha', 'eval', 'del', 'pexpire'])
/** Every command a store write sends; what else MONITOR shows (Sentinel, replication) is not the store's. */
const STORE_COMMANDS = new Set([...WRITES, 'multi', 'hset', 'hdel', 'wait'])

for (const kind of KINDS) {
  describe(`waitReplicas, ${kind.name}`, () => {
    let confirmed: Opened
    let impatient: Opened
    let unconfirmed: Opened
    before(async () => {
      confirmed = await kind.open(PATIENT)
      impatient = await kind.open({ waitReplicas: 1 })
      unconfirmed = await kind.open({})
      // Load both scripts first, so the counts below hold no NOSCRIPT round.
      await everyWrite(confirmed.store)
    })
    after(async () => {
      await confirmed?.close()
      await impatient?.close()
      await unconfirmed?.close()
    })

    it('sends WAIT 1 1000 right after every write, on the same connection, and the replica holds each write once it resolves', async () => {
      const onReplicaAfter: string[] = []
      const seen = await monitored(() =>
        everyWrite(confirmed.store, async (step, id) => {
          const [hash, pttl] = await Promise.all([onReplica.hgetall(id), onReplica.pttl(id)])
          onReplicaAfter.push(`${step}: ${JSON.stringify(hash)} ${pttl > 0 ? 'ttl' : pttl}`)
        }),
      )
      assert.deepEqual(onReplicaAfter, [
        'apply: {"user":"\\"ann\\"","cart":"[1]"} ttl',
        'increment: {"user":"\\"ann\\"","cart":"[1]","n":"2"} ttl',
        'applyIf: {"cart":"[1,2]","n":"2"} ttl',
        'apply unset: {"cart":"[1,2]"} ttl',
        'apply expiry only: {"cart":"[1,2]"} ttl',
        'touch: {"cart":"[1,2]"} ttl',
        'destroy: {} -2',
      ])
      const writes: string[] = []
      for (const lines of seen.values()) {
        let inMulti = false
        lines.forEach((args, i) => {
          const name = args[0] as string
          if (name === 'wait') assert.deepEqual(args, ['wait', '1', '1000'])
          if (name === 'multi') inMulti = true
          if (name === 'exec') inMulti = false
          if (!WRITES.has(name) || inMulti) return
          writes.push(name)
          assert.deepEqual(lines[i + 1], ['wait', '1', '1000'], `${name} is not followed by WAIT on its connection`)
        })
      }
      assert.deepEqual(writes.sort(), ['del', 'evalsha', 'evalsha', 'exec', 'exec', 'pexpire', 'pexpire'])
    })

    it('sends no WAIT with the default waitReplicas 0: the same commands as without the option', async () => {
      const calls = async () => {
        const counts = new Map<string, number>()
        for (const [name, value] of parseInfo(await onMaster.info('commandstats'))) counts.set(name.slice(8), Number(/calls=(\d+)/.exec(value)?.[1]))
        return counts
      }
      const start = await calls()
      const seen = await monitored(() => everyWrite(unconfirmed.store))
      const end = await calls()
      const delta = (name: string) => (end.get(name) ?? 0) - (start.get(name) ?? 0)
      assert.equal(delta('wait'), 0)
      assert.deepEqual(
        { multi: delta('multi'), exec: delta('exec'), evalsha: delta('evalsha'), del: delta('del') },
        { multi: 2, exec: 2, evalsha: 2, del: 1 },
      )
      const sent = [...seen.values()].flat().map(([name]) => name as string)
      assert.ok(!sent.includes('wait'))
      assert.deepEqual(sent.filter((name) => STORE_COMMANDS.has(name)), [
        'multi', 'hset', 'pexpire', 'exec', 'evalsha', 'evalsha', 'multi', 'hdel', 'pexpire', 'exec', 'pexpire', 'pexpire', 'del',
      ])
    })

    // The slow one runs once per adapter path: ioredis takes one whether given or opened, through Sentinel or not.
    if (!kind.distinct) return
    it('fails every write that no replica confirmed, saying so within waitTimeoutMs, and works again once the replica is back', { timeout: 30_000 }, async () => {
      const { store } = impatient
      const id = `wait:${randomUUID()}`
      await confirmed.store.apply(id, { set: { a: 1 }, ttlMs: MINUTE })
      await replica.stop('SIGKILL')
      try {
        await replicaGone()
        const attempts: Array<[string, () => Promise<unknown>]> = [
          ['MULTI/EXEC', () => store.apply(id, { set: { b: 2 }, ttlMs: MINUTE })],
          ['EVALSHA \\(increment\\)', () => store.increment(id, 'n', 1, MINUTE)],
          ['EVALSHA \\(applyIf\\)', () => store.applyIf(id, { set: { c: 3 }, expect: { a: 1 }, ttlMs: MINUTE })],
          ['PEXPIRE', () => store.touch(id, MINUTE)],
          ['DEL', () => store.destroy(`wait:${randomUUID()}`)],
        ]
        for (const [command, attempt] of attempts) {
          const started = Date.now()
          await assert.rejects(attempt(), (error: Error) => {
            assert.match(
              error.message,
              new RegExp(`^Redis session store: ${command} was written on the master but confirmed by 0 of 1 replica within 200 ms \\(option waitReplicas\\)`),
            )
            return true
          })
          const elapsed = Date.now() - started
          assert.ok(elapsed >= 190 && elapsed < store.timeoutMs, `${command} failed after ${elapsed} ms`)
        }
        // Not confirmed is not "not written": the master took every one of them.
        assert.deepEqual(await onMaster.hgetall(id), { a: '1', b: '2', n: '1', c: '3' })
        // A conditional write that found a conflict wrote nothing, so it needs no confirmation.
        assert.equal(await store.applyIf(id, { set: { d: 4 }, expect: { a: 2 }, ttlMs: MINUTE }), false)
        // Reads go on.
        assert.deepEqual({ ...(await store.get(id)) }, { a: 1, b: 2, n: 1, c: 3 })
      } finally {
        await replica.restart()
      }
      await replicaBack()
      await confirmed.store.apply(id, { set: { e: 5 }, ttlMs: MINUTE })
      assert.equal(await onReplica.hget(id, 'e'), '5')
    })
  })
}

describe('waitReplicas through whole requests', () => {
  it('answers 503 to a change no replica confirmed, logs how many did, keeps serving reads, and saves again once the replica is back', { timeout: 30_000 }, async () => {
    const store = new RedisStore({ url: master.url, waitReplicas: 1, waitTimeoutMs: 500 })
    const app = koaApp()
    const errors: Error[] = []
    app.on('error', (error: Error) => errors.push(error))
    app.use(session({ store }))
    app.use(async (ctx: Context) => {
      if (ctx.method === 'POST') ctx.session.theme = ctx.query.theme
      ctx.body = ctx.session.toJSON()
    })
    const running = await listen(app)
    try {
      const client = new Client(running.url)
      assert.equal((await client.request('/?theme=dark', { method: 'POST' })).status, 200)
      await replica.stop('SIGKILL')
      try {
        await replicaGone()
        const refused = await client.request('/?theme=light', { method: 'POST' })
        assert.equal(refused.status, 503)
        assert.doesNotMatch(refused.body, /replica/)
        assert.equal(errors.length, 1)
        assert.match(errors[0]?.message ?? '', /^Session store failed during .*MULTI\/EXEC was written on the master but confirmed by 0 of 1 replica within 500 ms/)
        const read = await client.get('/')
        assert.equal(read.status, 200)
        // The change is on the master, unconfirmed: a 503 means "not confirmed", not "not written".
        assert.deepEqual(read.json, { theme: 'light' })
      } finally {
        await replica.restart()
      }
      await replicaBack()
      assert.equal((await client.request('/?theme=blue', { method: 'POST' })).status, 200)
      assert.equal(await onReplica.hget(`koa:sess:${client.jar.get('koa.sid')}`, 'theme'), '"blue"')
    } finally {
      await running.close()
      await store.close()
    }
  })
})

describe('waitReplicas: option checks', () => {
  it('refuses invalid values, naming the option', () => {
    const client = new Redis({ lazyConnect: true })
    for (const waitReplicas of [-1, 1.5, Number.NaN, '1' as unknown as number]) {
      assert.throws(() => new RedisStore({ client, waitReplicas }), /option waitReplicas must be a whole number of replicas, 0 or more/)
    }
    for (const waitTimeoutMs of [0, 2.5, '200' as unknown as number]) {
      assert.throws(() => new RedisStore({ client, waitReplicas: 1, waitTimeoutMs }), /option waitTimeoutMs must be a whole number of milliseconds/)
    }
    // WAIT must end before the operation's own bound, or every unconfirmed write would time out instead.
    assert.throws(() => new RedisStore({ client, waitReplicas: 1, waitTimeoutMs: 500, timeoutMs: 500 }), /waitTimeoutMs .* less than timeoutMs \(500\), got 500/)
    const store = new RedisStore({ client, waitReplicas: 2, waitTimeoutMs: 50 })
    assert.equal(store.waitReplicas, 2)
    assert.equal(store.waitTimeoutMs, 50)
    const plain = new RedisStore({ client })
    assert.equal(plain.waitReplicas, 0)
    assert.equal(plain.waitTimeoutMs, 200)
    client.disconnect()
    // node-redis leaves the raw commands of a confirmed write unprefixed, so its keyPrefix would split a session in two.
    const prefixed = createClient({ url: master.url, keyPrefix: 'app:' })
    assert.throws(() => new RedisStore({ client: prefixed, waitReplicas: 1 }), /waitReplicas cannot be used with this client: .*keyPrefix "app:".*option prefix instead/)
    assert.doesNotThrow(() => new RedisStore({ client: prefixed }))
  })
})

const replicaGone = () => waitUntil('the master to see its replica gone', 10_000, async () => (await onMaster.info('replication')).includes('connected_slaves:0'))
const replicaBack = () =>
  waitUntil('the replica back in sync', 10_000, async () => (await onMaster.info('replication')).includes(`port=${replica.port},state=online`))
