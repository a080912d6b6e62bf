/**
 * Sentinel failover under load: one master, one replica, three sentinels. Four apps serve it at
 * once (ioredis through `sentinels` + `name`, node-redis through `createSentinel`, each with
 * `waitReplicas` 0 and 1) while the master is killed with SIGKILL: once with the replica keeping
 * up, once with the replica stalled for half a second first (what a slow link or a busy replica
 * looks like when the master dies). The apps follow each promotion without a restart; the killed
 * master then comes back as a replica of the promoted one.
 *
 * With `waitReplicas: 1` no acknowledged change may be lost: at the moment the master dies the
 * replica already holds every one, and so does the promoted master at the end. Between the
 * promotion and the old master's return there is no replica, so those apps' writes fail with 503
 * while reads go on, as the SPEC says for exactly `waitReplicas` replicas. With 0, whatever was
 * lost is reported.
 */
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it, type TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { createSentinel } from 'redis'
import { RedisStore } from '../../src/stores/redis/index.js'
import { SENTINEL_MASTER, type RedisServer } from '../helpers/redis-server.js'
import { type AppUnderTest, assertBounded, figuresOf, label, report, serve, startLoad, TIMEOUT_MS, type Variant, VARIANTS } from './harness.js'
import { checkLedgers, snapshot } from './ledger.js'
import { cutThenKill, HOST, rejoinAsReplica, startSentinelGroup, waitForSentinelPromotion, type SentinelGroup } from './topology.js'

/** How long the killed master stays down after the promotion, before it is brought back as a replica. */
const DOWN_AFTER_PROMOTION_MS = 4000

async function open(group: SentinelGroup, variant: Variant): Promise<AppUnderTest> {
  const wait = { waitReplicas: variant.waitReplicas, timeoutMs: TIMEOUT_MS }
  if (variant.client === 'ioredis') {
    const store = new RedisStore({ sentinels: group.sentinelAddresses, name: SENTINEL_MASTER, ...wait })
    return serve(variant, store, () => store.close())
  }
  const client = await createSentinel({ name: SENTINEL_MASTER, sentinelRootNodes: group.sentinelAddresses })
    .on('error', () => undefined) // the master's death is the point; the store reports failures
    .connect()
  return serve(variant, new RedisStore({ client, ...wait }), async () => client.destroy())
}

describe('Sentinel: the master is SIGKILLed under load', () => {
  let group: SentinelGroup
  const apps: AppUnderTest[] = []
  before(async () => {
    group = await startSentinelGroup()
    for (const variant of VARIANTS) apps.push(await open(group, variant))
  })
  after(async () => {
    for (const app of apps) await app.close()
    await group?.close()
  })

  /** The current master and replica (they swap with every failover). */
  async function roles(): Promise<{ master: RedisServer; replica: RedisServer }> {
    const port = await group.masterPort()
    return port === group.master.port ? { master: group.master, replica: group.replica } : { master: group.replica, replica: group.master }
  }

  /**
   * Kills the master under load; with `cutMs`, first cuts the replica off for that long: the
   * replica is stopped (SIGSTOP) so that it cannot reconnect, the master drops its link, and
   * writes go on without it until the master dies.
   */
  async function failover(t: TestContext, cutMs: number): Promise<void> {
    for (const app of apps) app.errors.length = 0
    const { master, replica } = await roles()
    const load = startLoad(apps, 4)
    let times: { cut: number; killed: number; promoted: number; rejoined: number } | undefined
    let atKill: Awaited<ReturnType<typeof checkLedgers>>[] = []
    try {
      await sleep(2500)
      const { cut, killed } = await cutThenKill(master, replica, cutMs)
      // Every change acknowledged so far was answered before the master died.
      const acknowledged = snapshot(load.ledgers)
      replica.signal('SIGCONT')
      await sleep(200) // what reached the replica before the master died is applied by now
      const onReplica = new Redis({ host: HOST, port: replica.port })
      try {
        atKill = await Promise.all(acknowledged.map((ledgers) => checkLedgers(ledgers, (key) => onReplica.hgetall(key))))
      } finally {
        onReplica.disconnect()
      }
      await waitForSentinelPromotion(group, replica)
      const promoted = performance.now()
      await sleep(DOWN_AFTER_PROMOTION_MS)
      await rejoinAsReplica(master, replica)
      times = { cut, killed, promoted, rejoined: performance.now() }
      await sleep(3000)
    } finally {
      replica.signal('SIGCONT')
      await load.stop()
    }
    const { cut, killed, promoted, rejoined } = times
    t.diagnostic(
      (cutMs > 0 ? `replica cut off ${Math.round(killed - cut)} ms, then ` : '') +
        `master killed; promotion seen ${Math.round(promoted - killed)} ms later; ` +
        `old master restarted ${DOWN_AFTER_PROMOTION_MS} ms after that, back as a replica in sync ${Math.round(rejoined - killed)} ms after the kill`,
    )

    const onMaster = new Redis({ host: HOST, port: replica.port })
    try {
      for (const [i, app] of apps.entries()) {
        const name = `Sentinel${cutMs > 0 ? ' (replica cut off)' : ''}, ${label(app.variant)}`
        const outcomes = load.outcomes[i] ?? []
        const figures = figuresOf(app, outcomes, cut, rejoined)
        const checked = await checkLedgers(load.ledgers[i] ?? [], (key) => onMaster.hgetall(key))
        const onReplicaAtKill = atKill[i] as Awaited<ReturnType<typeof checkLedgers>>
        report(t, app, name, figures, checked, onReplicaAtKill)
        assertBounded(name, figures, outcomes, rejoined)
        assert.ok(checked.acknowledged > 100, `${name}: only ${checked.acknowledged} changes were acknowledged`)
        assert.ok(
          outcomes.some((o) => o.started > promoted && o.ended < rejoined && o.status === 200),
          `${name}: nothing was served between the promotion and the old master's return`,
        )
        if (app.variant.waitReplicas === 1) {
          assert.equal(onReplicaAtKill.lost, 0, `${name}, at the kill: ${onReplicaAtKill.examples.join(' | ')}`)
          assert.equal(checked.lost, 0, `${name}: ${checked.examples.join(' | ')}`)
          // With no replica left after the promotion, writes are refused until the old master is back.
          assert.ok(
            outcomes.some((o) => o.op !== 'read' && o.status === 503 && o.started > promoted && o.ended < rejoined),
            `${name}: no write was refused while no replica could confirm it`,
          )
          const unconfirmed = app.errors.filter((error) => /confirmed by/.test(error.message))
          assert.ok(unconfirmed.length > 0, `${name}: no error said a write went unconfirmed`)
          for (const error of unconfirmed) assert.match(error.message, /was written on the master but confirmed by 0 of 1 replica within 200 ms/)
        }
      }
    } finally {
      onMaster.disconnect()
    }
  }

  it('with the replica keeping up: nothing acknowledged lost with waitReplicas 1, the promotion followed without a restart, nothing hangs', { timeout: 60_000 }, (t) =>
    failover(t, 0),
  )

  it('with the replica cut off 500 ms before the master dies: still nothing acknowledged lost with waitReplicas 1', { timeout: 60_000 }, (t) =>
    failover(t, 500),
  )
})
