/**
 * Cluster failover under load: three masters with one replica each. Four apps serve it at once
 * (an ioredis `Cluster` and a node-redis `createCluster`, each with `waitReplicas` 0 and 1) while
 * a master is killed with SIGKILL: once with its replica keeping up, once with the replica cut off
 * for half a second first. The cluster promotes the replica; the apps follow without a restart;
 * the killed node then rejoins as a replica.
 *
 * With `waitReplicas: 1` no acknowledged change may be lost. After the promotion that shard has no
 * replica until the old master is back, so its writes fail with 503; the other shards go on.
 */
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it, type TestContext } from 'node:test'
import { Cluster, Redis } from 'ioredis'
import type { RedisCluster, RedisServer } from '../helpers/redis-server.js'
import { type AppUnderTest, assertBounded, figuresOf, label, type Load, openOnCluster, report, roots, startLoad, VARIANTS } from './harness.js'
import { checkLedgers, snapshot } from './ledger.js'
import { clusterNodes, cutThenKill, HOST, placesOf, rejoinCluster, startReplicatedCluster, waitForClusterPromotion } from './topology.js'

/** How long the killed master stays down after the promotion, before it is brought back as a replica. */
const DOWN_AFTER_PROMOTION_MS = 4000

describe('Cluster: a master is SIGKILLed under load', () => {
  let cluster: RedisCluster
  const apps: AppUnderTest[] = []
  before(async () => {
    cluster = await startReplicatedCluster()
    for (const variant of VARIANTS) apps.push(await openOnCluster(cluster, variant))
  })
  after(async () => {
    for (const app of apps) await app.close()
    await cluster?.close()
  })

  /**
   * The master holding the most of every app's live sessions (so each app has sessions on the
   * shard that fails), and its replica.
   */
  async function busiestShard(load: Load): Promise<{ master: RedisServer; replica: RedisServer }> {
    const view = await clusterNodes(cluster.nodes[0] as RedisServer)
    const masters = view.filter((node) => node.role === 'master' && node.slots > 0 && !node.failing)
    const places = await placesOf(cluster.nodes[0] as RedisServer, load.liveIds().map((id) => `koa:sess:${id}`))
    const score = (port: number) => {
      const perApp = load.ledgers.map((ledgers) => ledgers.filter((l) => !l.destroyed && places.get(`koa:sess:${l.id}`)?.port === port).length)
      return Math.min(...perApp) * 1000 + perApp.reduce((a, b) => a + b, 0)
    }
    const master = masters.sort((a, b) => score(b.port) - score(a.port))[0]
    const replica = view.find((node) => node.masterId === master?.id)
    const server = (port: number | undefined) => cluster.nodes.find((node) => node.port === port) as RedisServer
    return { master: server(master?.port), replica: server(replica?.port) }
  }

  async function failover(t: TestContext, cutMs: number): Promise<void> {
    for (const app of apps) app.errors.length = 0
    const load = startLoad(apps, 6)
    let times: { cut: number; killed: number; promoted: number; rejoined: number } | undefined
    let atKill: Awaited<ReturnType<typeof checkLedgers>>[] = []
    let master: RedisServer | undefined
    let replica: RedisServer | undefined
    try {
      await sleep(2500)
      ;({ master, replica } = await busiestShard(load))
      const { cut, killed } = await cutThenKill(master, replica, cutMs)
      const acknowledged = snapshot(load.ledgers)
      replica.signal('SIGCONT')
      await sleep(200) // what reached the replica before its master died is applied by now
      // The sessions of the killed master's slots, as its replica holds them when it takes over
      // (READONLY lets it answer for them; it answers MOVED for the other shards' sessions,
      // which go on changing and are left to the end check).
      const onReplica = new Redis({ host: HOST, port: replica.port })
      try {
        await onReplica.call('readonly')
        const read = (key: string) =>
          onReplica.hgetall(key).catch((error: unknown) => {
            if (error instanceof Error && error.message.startsWith('MOVED')) return undefined
            throw error
          })
        atKill = await Promise.all(acknowledged.map((ledgers) => checkLedgers(ledgers, read)))
      } finally {
        onReplica.disconnect()
      }
      await waitForClusterPromotion(cluster, master)
      const promoted = performance.now()
      await sleep(DOWN_AFTER_PROMOTION_MS)
      await rejoinCluster(master)
      times = { cut, killed, promoted, rejoined: performance.now() }
      await sleep(3000)
    } finally {
      replica?.signal('SIGCONT')
      await load.stop()
    }
    const { cut, killed, promoted, rejoined } = times
    t.diagnostic(
      (cutMs > 0 ? `replica cut off ${Math.round(killed - cut)} ms, then ` : '') +
        `master ${master.port} killed; its replica ${replica.port} promoted, seen ${Math.round(promoted - killed)} ms later; ` +
        `old master restarted ${DOWN_AFTER_PROMOTION_MS} ms after that, back as a replica in sync ${Math.round(rejoined - killed)} ms after the kill`,
    )

    const reader = new Cluster(roots(cluster))
    try {
      for (const [i, app] of apps.entries()) {
        const name = `Cluster${cutMs > 0 ? ' (replica cut off)' : ''}, ${label(app.variant)}`
        const outcomes = load.outcomes[i] ?? []
        const figures = figuresOf(app, outcomes, cut, rejoined)
        const checked = await checkLedgers(load.ledgers[i] ?? [], (key) => reader.hgetall(key))
        const onReplicaAtKill = atKill[i] as Awaited<ReturnType<typeof checkLedgers>>
        report(t, app, name, figures, checked, onReplicaAtKill)
        assertBounded(name, figures, outcomes, rejoined)
        assert.ok(checked.acknowledged > 100, `${name}: only ${checked.acknowledged} changes were acknowledged`)
        assert.ok(
          outcomes.some((o) => o.started > promoted && o.ended < rejoined && o.status === 200 && o.op !== 'read'),
          `${name}: no change was saved between the promotion and the old master's return`,
        )
        if (app.variant.waitReplicas === 1) {
          assert.equal(onReplicaAtKill.lost, 0, `${name}, at the kill: ${onReplicaAtKill.examples.join(' | ')}`)
          assert.equal(checked.lost, 0, `${name}: ${checked.examples.join(' | ')}`)
          const unconfirmed = app.errors.filter((error) => /confirmed by/.test(error.message))
          assert.ok(unconfirmed.length > 0, `${name}: no error said a write went unconfirmed`)
          for (const error of unconfirmed) assert.match(error.message, /was written on the master but confirmed by 0 of 1 replica within 200 ms/)
        }
      }
    } finally {
      reader.disconnect()
    }
  }

  it('with the replica keeping up: nothing acknowledged lost with waitReplicas 1, the promotion followed without a restart, nothing hangs', { timeout: 60_000 }, (t) =>
    failover(t, 0),
  )

  it('with the replica cut off 500 ms before its master dies: still nothing acknowledged lost with waitReplicas 1', { timeout: 60_000 }, (t) =>
    failover(t, 500),
  )
})
