/**
 * Soak with faults: many clients read, write and count on two apps (one on ioredis, one on
 * node-redis) that share one Redis with `appendonly yes` and `appendfsync always`, while that
 * Redis is killed with SIGKILL and restarted, twice, on the same port and data directory.
 *
 * Every answer the clients get is entered in a ledger. Afterwards, every change answered 2xx must
 * be in Redis; during the outages requests must fail with 503 within the store's timeoutMs, never
 * hang. `SOAK_SECONDS` (default 24, at most 60) sets the length.
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import type { Context } from 'koa'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { session } from '../../src/index.js'
import { RedisStore } from '../../src/stores/redis/index.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'

const SOAK_MS = Math.min(60, Number(process.env.SOAK_SECONDS ?? 24)) * 1000
const TIMEOUT_MS = 500
/** What a failing request may take beyond timeoutMs: the HTTP round trip and a busy event loop. */
const SLACK_MS = 350
const OUTAGE_MS = 2_000
const KILLS_AT = [0.22, 0.6].map((share) => Math.round(share * SOAK_MS))
const SESSIONS = 16

/** One worker's view of its session: what it was told was saved. */
interface Ledger {
  id: string
  /** Keys written once each, with the value acknowledged. */
  writes: Map<string, string>
  /** `last` is overwritten with rising numbers: the highest acknowledged, and every one sent. */
  lastAcked: number
  lastSent: Set<number>
  /** Values that acknowledged increments returned, and how many increments were sent. */
  counts: number[]
  incrementsSent: number
}

interface Outcome {
  op: 'read' | 'write' | 'overwrite' | 'increment'
  /** 0: the app on ioredis, 1: the app on node-redis. */
  app: number
  status: number
  started: number
  ended: number
}

function soakApp(store: RedisStore, errors: Error[]): Promise<Running> {
  const app = koaApp()
  app.on('error', (error: Error) => errors.push(error))
  app.use(session({ store }))
  app.use(async (ctx: Context) => {
    const query = ctx.query as Record<string, string>
    if (ctx.path === '/read') ctx.body = ctx.session.toJSON()
    else if (ctx.path === '/write') ctx.session[query.key as string] = query.value
    else if (ctx.path === '/overwrite') ctx.session.last = Number(query.seq)
    else if (ctx.path === '/increment') ctx.body = { n: await ctx.session.increment('n') }
    if (ctx.body === undefined) ctx.body = { ok: true }
  })
  return listen(app)
}

describe('soak: mixed traffic on Redis with AOF while Redis is SIGKILLed and restarted twice', () => {
  let redis: RedisServer
  let ioredisStore: RedisStore
  let nodeRedis: ReturnType<typeof createClient> | undefined
  const apps: Running[] = []
  const errors: Error[] = []

  before(async () => {
    redis = await startRedis(['--appendonly', 'yes', '--appendfsync', 'always'])
    ioredisStore = new RedisStore({ url: redis.url, timeoutMs: TIMEOUT_MS })
    nodeRedis = createClient({ url: redis.url })
    nodeRedis.on('error', () => undefined) // reconnects are expected here; the store reports failures
    await nodeRedis.connect()
    apps.push(await soakApp(ioredisStore, errors))
    apps.push(await soakApp(new RedisStore({ client: nodeRedis, timeoutMs: TIMEOUT_MS }), errors))
  })
  after(async () => {
    for (const app of apps) await app.close()
    await ioredisStore?.close()
    nodeRedis?.destroy()
    await redis?.close()
  })

  it(`loses no acknowledged change over ${SOAK_MS / 1000} s, and fails fast while Redis is down`, { timeout: SOAK_MS + 60_000 }, async (t) => {
    const outcomes: Outcome[] = []
    const ledgers: Ledger[] = []
    const violations: string[] = []
    const started = Date.now()
    const deadline = started + SOAK_MS
    const urls = apps.map((app) => app.url)

    async function worker(index: number): Promise<void> {
      const client = new Client('')
      const first = await client.request(`${urls[index % 2]}/write?key=start&value=${index}`, { method: 'POST' })
      assert.equal(first.status, 200, first.body)
      const ledger: Ledger = {
        id: client.jar.get('koa.sid') as string,
        writes: new Map([['start', String(index)]]),
        lastAcked: -1,
        lastSent: new Set(),
        counts: [],
        incrementsSent: 0,
      }
      ledgers.push(ledger)
      let sequence = 0
      while (Date.now() < deadline) {
        const roll = Math.random()
        const op: Outcome['op'] = roll < 0.4 ? 'read' : roll < 0.7 ? 'write' : roll < 0.85 ? 'overwrite' : 'increment'
        const seq = sequence++
        const begin = Date.now()
        // What a read must show: everything acknowledged before it was sent.
        const expected = op === 'read' ? { writes: [...ledger.writes], last: ledger.lastAcked, n: Math.max(0, ...ledger.counts) } : undefined
        let path: string
        if (op === 'write') path = `/write?key=k${seq}&value=v${index}.${seq}`
        else if (op === 'overwrite') path = `/overwrite?seq=${seq}`
        else if (op === 'increment') path = '/increment'
        else path = '/read'
        if (op === 'overwrite') ledger.lastSent.add(seq)
        if (op === 'increment') ledger.incrementsSent++
        // Any request may land on either app, as behind a load balancer.
        const app = Math.floor(Math.random() * urls.length)
        const reply = await client.request((urls[app] as string) + path, { method: op === 'read' ? 'GET' : 'POST' })
        outcomes.push({ op, app, status: reply.status, started: begin, ended: Date.now() })
        if (client.jar.get('koa.sid') !== ledger.id) violations.push(`session ${index} was given a new id after ${op} (${reply.status})`)
        if (reply.status !== 200) {
          await sleep(10)
          continue
        }
        if (op === 'write') ledger.writes.set(`k${seq}`, `v${index}.${seq}`)
        else if (op === 'overwrite') ledger.lastAcked = Math.max(ledger.lastAcked, seq)
        else if (op === 'increment') ledger.counts.push((reply.json as { n: number }).n)
        else if (expected) {
          const data = reply.json as Record<string, unknown>
          for (const [key, value] of expected.writes) {
            if (data[key] !== value) violations.push(`session ${index}: a read after the acknowledged ${key}=${value} saw ${String(data[key])}`)
          }
          if (expected.last >= 0 && !((data.last as number) >= expected.last)) violations.push(`session ${index}: read last=${String(data.last)} after ${expected.last} was acknowledged`)
          if (!((data.n as number | undefined ?? 0) >= expected.n)) violations.push(`session ${index}: read n=${String(data.n)} after ${expected.n} was acknowledged`)
        }
      }
    }

    /** Kills Redis at each planned moment, keeps it down OUTAGE_MS, restarts it on the same port and data. */
    const faults: Array<{ killed: number; restarted: number }> = []
    async function chaos(): Promise<void> {
      for (const at of KILLS_AT) {
        await sleep(Math.max(0, started + at - Date.now()))
        const killed = Date.now()
        await redis.stop('SIGKILL')
        await sleep(OUTAGE_MS)
        await redis.restart()
        faults.push({ killed, restarted: Date.now() })
      }
    }

    await Promise.all([chaos(), ...Array.from({ length: SESSIONS }, (_, i) => worker(i))])

    // Every acknowledged change must be in Redis, as the store keeps it.
    const probe = new Redis(redis.url)
    let acknowledged = 0
    let lost = 0
    try {
      for (const ledger of ledgers) {
        const stored = await probe.hgetall(`koa:sess:${ledger.id}`)
        const value = (field: string): unknown => (stored[field] === undefined ? undefined : JSON.parse(stored[field] as string))
        for (const [key, expected] of ledger.writes) {
          acknowledged++
          if (value(key) !== expected) {
            lost++
            violations.push(`${ledger.id}: acknowledged ${key}=${expected}, Redis holds ${String(value(key))}`)
          }
        }
        if (ledger.lastAcked >= 0) {
          acknowledged++
          const last = value('last') as number
          // A later overwrite that failed with 503 may still have been applied: "not confirmed", not "not written".
          if (!(last >= ledger.lastAcked && ledger.lastSent.has(last))) {
            lost++
            violations.push(`${ledger.id}: acknowledged last=${ledger.lastAcked}, Redis holds ${last}`)
          }
        }
        acknowledged += ledger.counts.length
        const n = (value('n') as number | undefined) ?? 0
        if (new Set(ledger.counts).size !== ledger.counts.length) violations.push(`${ledger.id}: two increments returned the same count`)
        if (n < ledger.counts.length || n < Math.max(0, ...ledger.counts) || n > ledger.incrementsSent) {
          lost++
          violations.push(`${ledger.id}: ${ledger.counts.length} increments acknowledged (${ledger.incrementsSent} sent), Redis holds n=${n}`)
        }
      }
    } finally {
      probe.disconnect()
    }

    const served = outcomes.filter((o) => o.status >= 200 && o.status < 300)
    const failed = outcomes.filter((o) => o.status >= 300)
    // Per restart and app: from Redis answering PING again to that app's first 2xx.
    const recoveries = faults.map((f) =>
      [0, 1].map((app) => Math.min(...outcomes.filter((o) => o.app === app && o.status === 200 && o.ended > f.restarted).map((o) => o.ended)) - f.restarted),
    )
    // A failure belongs to an outage when the request overlapped it: from the kill until its app recovered.
    const outageOf = (o: Outcome) => faults.findIndex((f, i) => o.ended >= f.killed && o.started <= f.restarted + (recoveries[i]?.[o.app] ?? 0))
    const outageFailures = faults.map((_, i) => failed.filter((o) => outageOf(o) === i).length)
    const strayFailures = failed.filter((o) => outageOf(o) < 0)
    const slowest = Math.max(0, ...failed.map((o) => o.ended - o.started))
    // A request sent while Redis was down fails at its first store call (the session's load).
    const whileDown = failed.filter((o) => faults.some((f) => o.started > f.killed + 100 && o.ended < f.restarted))
    const slowestWhileDown = Math.max(0, ...whileDown.map((o) => o.ended - o.started))

    t.diagnostic(`requests served (2xx): ${served.length} (${Math.round(served.length / (SOAK_MS / 1000))}/s), ${SESSIONS} sessions on 2 apps (ioredis, node-redis)`)
    t.diagnostic(`errors: ${failed.length} (outage 1: ${outageFailures[0]}, outage 2: ${outageFailures[1]}, outside outages: ${strayFailures.length}; statuses ${[...new Set(failed.map((o) => o.status))].join(', ')})`)
    t.diagnostic(`slowest failure ${slowest} ms; slowest failure of a request sent while Redis was down ${slowestWhileDown} ms (timeoutMs ${TIMEOUT_MS})`)
    t.diagnostic(`acknowledged changes checked in Redis: ${acknowledged}; lost: ${lost}`)
    t.diagnostic(`time to recover (Redis answering PING to the app's first 2xx): ${recoveries.map(([io, node], i) => `restart ${i + 1}: ioredis ${io} ms, node-redis ${node} ms`).join('; ')}`)
    t.diagnostic(`app error events: ${errors.length}; kinds: ${[...new Set(errors.map((e) => e.message.replace(/\d+/g, 'N').slice(0, 90)))].slice(0, 4).join(' | ')}`)

    assert.deepEqual(violations.slice(0, 20), [])
    assert.equal(lost, 0)
    assert.equal(faults.length, KILLS_AT.length)
    for (const o of failed) assert.equal(o.status, 503, `a ${o.op} answered ${o.status}`)
    assert.deepEqual(strayFailures, [], 'requests failed while Redis was up and the app had recovered')
    assert.ok(whileDown.length > 0, 'no request was sent while Redis was down: the outage was not exercised')
    assert.ok(slowestWhileDown <= TIMEOUT_MS + SLACK_MS, `a request sent during an outage took ${slowestWhileDown} ms to fail`)
    // At most two store calls per request (load, then write), each bounded by timeoutMs.
    assert.ok(slowest <= 2 * TIMEOUT_MS + SLACK_MS, `a request took ${slowest} ms to fail`)
    for (const [i, pair] of recoveries.entries()) {
      for (const ms of pair) assert.ok(Number.isFinite(ms) && ms < 5_000, `an app did not recover within 5 s of restart ${i + 1}`)
    }
    for (const f of faults) {
      assert.ok(served.some((o) => o.started > f.restarted), 'requests did not succeed again after a restart')
    }
    for (const error of errors) assert.match(error.message, /^Session store failed during /)
  })
})
