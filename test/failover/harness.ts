/**
 * Load with a client-side ledger, for the failover suites. Several apps (one per client and
 * setting) serve the same Redis topology at once; each has its own workers, each worker one
 * session at a time. Every change a worker is answered 2xx for goes into its ledger; afterwards
 * each must be in Redis. Every answer is timed, and so is every store operation, so a scenario can
 * say how many requests were served, how many failed during the switch, when requests succeeded
 * again, and whether anything waited past `timeoutMs`.
 */
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestContext } from 'node:test'
import type { Context } from 'koa'
import { Cluster } from 'ioredis'
import { createCluster } from 'redis'
import { session } from '../../src/index.js'
import type { Store } from '../../src/store.js'
import { RedisStore } from '../../src/stores/redis/index.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import type { RedisCluster } from '../helpers/redis-server.js'
import type { Checked, Ledger } from './ledger.js'

/** Every store operation's bound in these suites. */
export const TIMEOUT_MS = 1000
/** What a timer, an HTTP round trip and a busy event loop may add to a bound. */
export const SLACK_MS = 400
/** Store operations per request, at most: the load, then `update`'s read and conditional write. */
const OPS_PER_REQUEST = 3

export interface Variant {
  client: 'ioredis' | 'node-redis'
  waitReplicas: 0 | 1
}

/** Every scenario runs on both clients, with and without waiting for a replica. */
export const VARIANTS: readonly Variant[] = [
  { client: 'ioredis', waitReplicas: 1 },
  { client: 'node-redis', waitReplicas: 1 },
  { client: 'ioredis', waitReplicas: 0 },
  { client: 'node-redis', waitReplicas: 0 },
]

export const label = (variant: Variant): string => `${variant.client}, waitReplicas ${variant.waitReplicas}`

export interface AppUnderTest {
  variant: Variant
  running: Running
  errors: Error[]
  /** Each store operation: how long it took and whether it failed. */
  operations: Array<{ op: string; ms: number; ok: boolean }>
  close(): Promise<void>
}

/** Serves the routes the workers call, on `store`, with every store operation timed. */
export async function serve(variant: Variant, store: RedisStore, closeStore: () => Promise<void>): Promise<AppUnderTest> {
  const operations: AppUnderTest['operations'] = []
  const errors: Error[] = []
  const app = koaApp()
  app.on('error', (error: Error) => errors.push(error))
  app.use(session({ store: timed(store, operations) }))
  app.use(async (ctx: Context) => {
    const query = ctx.query as Record<string, string>
    if (ctx.path === '/start') ctx.session.worker = query.worker
    else if (ctx.path === '/write') ctx.session[query.key as string] = query.value
    else if (ctx.path === '/increment') ctx.body = { n: await ctx.session.increment('n') }
    else if (ctx.path === '/update') {
      const seq = Number(query.seq)
      await ctx.session.update('seqs', (list) => [...((list as number[] | undefined) ?? []), seq])
    } else if (ctx.path === '/destroy') ctx.session = null
    else if (ctx.path === '/read') ctx.body = ctx.session.toJSON()
    ctx.body ??= { ok: true }
  })
  const running = await listen(app)
  return {
    variant,
    running,
    errors,
    operations,
    close: async () => {
      await running.close()
      await closeStore()
    },
  }
}

/** Every node as a root, so a client can start over from any node that is still up. */
export const roots = (cluster: RedisCluster): Array<{ host: string; port: number }> =>
  cluster.nodes.map((node) => ({ host: '127.0.0.1', port: node.port }))

/**
 * An app on `cluster` through an ioredis `Cluster` or a node-redis `createCluster`;
 * `waitTimeoutMs` as RedisStore's option (its default when not given).
 */
export async function openOnCluster(cluster: RedisCluster, variant: Variant, waitTimeoutMs?: number): Promise<AppUnderTest> {
  const wait = { waitReplicas: variant.waitReplicas, timeoutMs: TIMEOUT_MS, ...(waitTimeoutMs === undefined ? {} : { waitTimeoutMs }) }
  if (variant.client === 'ioredis') {
    const client = new Cluster(roots(cluster))
    client.on('error', () => undefined) // node deaths are the point; the store reports failures
    return serve(variant, new RedisStore({ client, ...wait }), async () => void client.disconnect())
  }
  const rootNodes = roots(cluster).map(({ host, port }) => ({ url: `redis://${host}:${port}` }))
  const client = await createCluster({ rootNodes }).on('error', () => undefined).connect()
  return serve(variant, new RedisStore({ client, ...wait }), async () => client.destroy())
}

function timed(store: RedisStore, operations: AppUnderTest['operations']): Store {
  const time = <A extends unknown[], R>(op: string, run: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const started = performance.now()
      try {
        const result = await run(...args)
        operations.push({ op, ms: performance.now() - started, ok: true })
        return result
      } catch (error) {
        operations.push({ op, ms: performance.now() - started, ok: false })
        throw error
      }
    }
  return {
    get: time('get', (id: string) => store.get(id)),
    apply: time('apply', (id: string, patch: Parameters<Store['apply']>[1]) => store.apply(id, patch)),
    applyIf: time('applyIf', (id: string, patch: Parameters<NonNullable<Store['applyIf']>>[1]) => store.applyIf(id, patch)),
    increment: time('increment', (id: string, key: string, by: number, ttlMs: number) => store.increment(id, key, by, ttlMs)),
    touch: time('touch', (id: string, ttlMs: number) => store.touch(id, ttlMs)),
    destroy: time('destroy', (id: string) => store.destroy(id)),
  }
}

type Op = 'start' | 'read' | 'write' | 'increment' | 'update' | 'destroy'

interface Outcome {
  op: Op
  status: number
  started: number
  ended: number
}

export interface Load {
  /** Per app, in the order given: the answers, and the sessions' ledgers. */
  readonly outcomes: Outcome[][]
  readonly ledgers: Ledger[][]
  /** Ids of the sessions live now (not destroyed), across apps. */
  liveIds(): string[]
  /** Stops the workers and waits for their last requests. */
  stop(): Promise<void>
}

/**
 * Starts `workers` workers per app, each looping over reads and every kind of write; a share
 * `destroys` of the requests destroys the worker's session, which then starts a new one.
 */
export function startLoad(apps: AppUnderTest[], workers: number, destroys = 0.005): Load {
  const outcomes = apps.map((): Outcome[] => [])
  const ledgers = apps.map((): Ledger[] => [])
  let stopping = false

  async function worker(appIndex: number, workerIndex: number): Promise<void> {
    const app = apps[appIndex] as AppUnderTest
    const client = new Client(app.running.url)
    let ledger: Ledger | undefined
    let seq = 0
    while (!stopping) {
      const roll = Math.random()
      const op: Op =
        ledger === undefined ? 'start'
        : roll < destroys ? 'destroy'
        : roll < 0.3 ? 'read'
        : roll < 0.65 ? 'write'
        : roll < 0.8 ? 'increment'
        : 'update'
      const n = seq++
      const path =
        op === 'start' ? `/start?worker=${workerIndex}`
        : op === 'write' ? `/write?key=k${n}&value=v${n}`
        : op === 'update' ? `/update?seq=${n}`
        : `/${op}`
      if (op === 'destroy' && ledger) ledger.destroySent = true
      const started = performance.now()
      let status = 0
      let json: unknown
      try {
        const reply = await client.request(path, { method: op === 'read' ? 'GET' : 'POST' })
        status = reply.status
        json = reply.json
      } catch {
        status = 0 // the app itself did not answer: counted as a failure
      }
      ;(outcomes[appIndex] as Outcome[]).push({ op, status, started, ended: performance.now() })
      if (status < 200 || status > 299) {
        await sleep(5)
        continue
      }
      const id = client.jar.get('koa.sid')
      if (op === 'destroy') {
        if (ledger) ledger.destroyed = true
        ledger = undefined
        continue
      }
      if (id === undefined) throw new Error(`${op} answered ${status} without a session cookie`)
      // A session that vanished (a failover without waitReplicas can lose its creation) comes back
      // under a new id: its ledger stays as it was, to be checked, and a new one begins.
      if (ledger?.id !== id) {
        ledger = { id, writes: new Map(), counts: [], seqs: [], destroyed: false, destroySent: false }
        ;(ledgers[appIndex] as Ledger[]).push(ledger)
      }
      if (op === 'write') ledger.writes.set(`k${n}`, `v${n}`)
      else if (op === 'increment') ledger.counts.push((json as { n: number }).n)
      else if (op === 'update') ledger.seqs.push(n)
    }
  }

  const running = apps.flatMap((_, appIndex) => Array.from({ length: workers }, (__, w) => worker(appIndex, w)))
  return {
    outcomes,
    ledgers,
    liveIds: () => ledgers.flat().filter((ledger) => !ledger.destroyed).map((ledger) => ledger.id),
    async stop() {
      stopping = true
      await Promise.all(running)
    },
  }
}

export interface Figures {
  served: number
  failed: number
  /** Failures that overlapped the switch (from the event until it was over). */
  failedDuringSwitch: number
  /** From the event to the end of the last failed request: after that, everything succeeded. */
  succeedAgainMs: number
  /** The longest time in which the app answered no request 2xx, within the switch. */
  longestGapMs: number
  slowestRequestMs: number
  slowestOperationMs: number
  statuses: number[]
}

/**
 * Figures for one app around one event (`from` .. `to`, performance.now() times) and the checks
 * every scenario makes: failures are 503s, nothing waited past the bounds, requests succeed again.
 */
export function figuresOf(app: AppUnderTest, outcomes: Outcome[], from: number, to: number): Figures {
  const failures = outcomes.filter((o) => o.status < 200 || o.status > 299)
  const during = failures.filter((o) => o.ended >= from && o.started <= to)
  const lastFailure = Math.max(from, ...failures.map((o) => o.ended))
  const successes = outcomes.filter((o) => o.status >= 200 && o.status <= 299 && o.ended >= from).map((o) => o.ended).sort((a, b) => a - b)
  let longestGapMs = 0
  let previous = from
  for (const ended of successes) {
    if (ended > to) break
    longestGapMs = Math.max(longestGapMs, ended - previous)
    previous = ended
  }
  return {
    served: outcomes.length - failures.length,
    failed: failures.length,
    failedDuringSwitch: during.length,
    succeedAgainMs: Math.round(lastFailure - from),
    longestGapMs: Math.round(longestGapMs),
    slowestRequestMs: Math.round(Math.max(0, ...outcomes.map((o) => o.ended - o.started))),
    slowestOperationMs: Math.round(Math.max(0, ...app.operations.map((o) => o.ms))),
    statuses: [...new Set(failures.map((o) => o.status))].sort(),
  }
}

/** The assertions every app makes in every scenario, whatever its setting. */
export function assertBounded(name: string, figures: Figures, outcomes: Outcome[], to: number): void {
  assert.deepEqual(figures.statuses.filter((status) => status !== 503), [], `${name}: a request failed with something other than 503`)
  assert.ok(figures.slowestOperationMs <= TIMEOUT_MS + SLACK_MS, `${name}: a store operation took ${figures.slowestOperationMs} ms (timeoutMs ${TIMEOUT_MS})`)
  assert.ok(
    figures.slowestRequestMs <= OPS_PER_REQUEST * TIMEOUT_MS + SLACK_MS,
    `${name}: a request took ${figures.slowestRequestMs} ms (at most ${OPS_PER_REQUEST} store operations of ${TIMEOUT_MS} ms)`,
  )
  assert.ok(outcomes.some((o) => o.started > to && o.status === 200 && o.op !== 'read'), `${name}: no change succeeded after the switch`)
}

/**
 * One line per app and scenario. `atSwitch`: the same ledgers checked against the node that took
 * over, at the moment it took over; the end check cannot see a loss in a session that was later
 * destroyed on purpose.
 */
export function report(t: TestContext, app: AppUnderTest, name: string, figures: Figures, checked: Checked, atSwitch?: Checked): void {
  const lost = atSwitch === undefined ? `${checked.lost}` : `${atSwitch.lost} of the ${atSwitch.acknowledged} the failed master had, ${checked.lost} at the end`
  t.diagnostic(
    `${name}: requests served ${figures.served}, failed ${figures.failed} (during the switch ${figures.failedDuringSwitch}; ` +
      `statuses ${figures.statuses.join(', ') || 'none'}), requests all succeed again ${figures.succeedAgainMs} ms after the event ` +
      `(longest time without a 2xx ${figures.longestGapMs} ms), acknowledged changes ${checked.acknowledged}, lost ${lost}` +
      (checked.unconfirmedDestroys > 0 ? ` (${checked.unconfirmedDestroys} destroy answered 503 was applied all the same)` : '') +
      `; slowest request ${figures.slowestRequestMs} ms, slowest store operation ${figures.slowestOperationMs} ms` +
      (checked.examples.length > 0 ? `; e.g. ${checked.examples.slice(0, 2).join(' | ')}` : ''),
  )
  const kinds = new Map<string, number>()
  for (const error of app.errors) {
    // "Session store failed during save: <the store's reason>. Nothing of ..." → the reason, numbers masked
    const reason = (/failed during [^:]+: (.*?)\. Nothing of/.exec(error.message)?.[1] ?? error.message).replace(/\d+/g, 'N')
    kinds.set(reason, (kinds.get(reason) ?? 0) + 1)
  }
  const top = [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 4)
  if (top.length > 0) t.diagnostic(`${name}: errors logged: ${top.map(([reason, count]) => `${count}× ${reason.slice(0, 140)}`).join(' | ')}`)
}
