/**
 * The production topologies the failover suites run on, built from test/helpers/redis-server.ts
 * (real redis-server processes on loopback ports, stopped by PID): a Sentinel group (one master,
 * one replica, three sentinels) and a Cluster of three masters with one replica each, plus what
 * the scenarios do to them: wait for a promotion, bring a killed node back as a replica, and move
 * hash slots with CLUSTER SETSLOT + MIGRATE while traffic flows.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import {
  SENTINEL_MASTER,
  startCluster,
  startRedis,
  startReplica,
  startSentinel,
  waitUntil,
  type RedisCluster,
  type RedisServer,
} from '../helpers/redis-server.js'

export const HOST = '127.0.0.1'

export interface SentinelGroup {
  /** The master and the replica as started; after a failover their roles are swapped. */
  readonly master: RedisServer
  readonly replica: RedisServer
  readonly sentinels: RedisServer[]
  readonly sentinelAddresses: Array<{ host: string; port: number }>
  /** The master's port, as every sentinel reports it (throws while they disagree). */
  masterPort(): Promise<number>
  close(): Promise<void>
}

/**
 * One master, one replica, three sentinels with quorum 2. A master unreachable for a second is
 * down; the sentinels then promote the replica, usually within three to five seconds.
 */
export async function startSentinelGroup(): Promise<SentinelGroup> {
  const started: RedisServer[] = []
  try {
    // Each of the two may become the master that a replica syncs from: no 5 s wait before a sync.
    const master = await startRedis(['--repl-diskless-sync-delay', '0'])
    started.push(master)
    const replica = await startReplica(master)
    started.push(replica)
    const sentinels: RedisServer[] = []
    for (let i = 0; i < 3; i++) {
      const sentinel = await startSentinel(master, { quorum: 2, downAfterMs: 1000, failoverTimeoutMs: 5000 })
      started.push(sentinel)
      sentinels.push(sentinel)
    }
    // A failover needs every sentinel to know the replica and the two other sentinels.
    for (const sentinel of sentinels) {
      await waitUntil(`sentinel ${sentinel.port} to know the replica and the other sentinels`, 15_000, async () => {
        const state = fields(await sentinel.cli('sentinel', 'master', SENTINEL_MASTER))
        return state.get('num-slaves') === '1' && state.get('num-other-sentinels') === '2'
      })
    }
    const group: SentinelGroup = {
      master,
      replica,
      sentinels,
      sentinelAddresses: sentinels.map((sentinel) => ({ host: HOST, port: sentinel.port })),
      async masterPort() {
        const ports = new Set<number>()
        for (const sentinel of sentinels) {
          const [, port] = (await sentinel.cli('sentinel', 'get-master-addr-by-name', SENTINEL_MASTER)).trim().split('\n')
          ports.add(Number(port))
        }
        if (ports.size !== 1) throw new Error(`the sentinels disagree on the master: ${[...ports].join(', ')}`)
        return [...ports][0] as number
      },
      close: async () => {
        await Promise.all(started.map((server) => server.close()))
      },
    }
    return group
  } catch (error) {
    await Promise.all(started.map((server) => server.close()))
    throw error
  }
}

/** Waits until every sentinel names `promoted` the master and it says so itself. */
export async function waitForSentinelPromotion(group: SentinelGroup, promoted: RedisServer, timeoutMs = 20_000): Promise<void> {
  await waitUntil(`the sentinels to promote ${promoted.port}`, timeoutMs, async () => {
    if ((await group.masterPort()) !== promoted.port) return false
    return (await promoted.cli('info', 'replication')).includes('role:master')
  })
}

/**
 * Restarts a killed master (empty: no persistence) and makes it a replica of `master`, as an
 * operator or orchestrator does; waits until it is in sync. It is made a replica before anything
 * can use it: the sentinels and the clients already name the promoted master.
 */
export async function rejoinAsReplica(node: RedisServer, master: RedisServer, timeoutMs = 20_000): Promise<void> {
  await node.restart()
  await node.cli('replicaof', HOST, String(master.port))
  await waitUntil(`${node.port} in sync as a replica of ${master.port}`, timeoutMs, async () =>
    (await master.cli('info', 'replication')).includes(`port=${node.port},state=online`),
  )
}

/**
 * The failure under test: with `cutMs` > 0 the replica is first cut off its master for that long
 * (SIGSTOP, and the master drops it), so the master holds writes the replica never got; then the
 * master is SIGKILLed. The replica stays stopped: the caller resumes it (SIGCONT) once it has
 * taken its snapshot of what was acknowledged.
 */
export async function cutThenKill(master: RedisServer, replica: RedisServer, cutMs: number): Promise<{ cut: number; killed: number }> {
  const cut = performance.now()
  if (cutMs > 0) {
    replica.signal('SIGSTOP')
    await master.cli('client', 'kill', 'type', 'replica')
    await sleep(cutMs)
  }
  const killed = performance.now()
  await master.stop('SIGKILL')
  return { cut, killed }
}

export interface ClusterNode {
  id: string
  port: number
  role: 'master' | 'replica'
  /** The master it replicates (replicas only). */
  masterId: string | undefined
  /** Marked failed (`fail` or `fail?`) by the node that answered. */
  failing: boolean
  slots: number
}

/** CLUSTER NODES as `node` sees it. */
export async function clusterNodes(node: RedisServer): Promise<ClusterNode[]> {
  return (await node.cli('cluster', 'nodes'))
    .trim()
    .split('\n')
    .map((line) => {
      const [id = '', address = '', flags = '', master = '', , , , , ...ranges] = line.split(' ')
      const slots = ranges
        .filter((range) => !range.startsWith('['))
        .reduce((sum, range) => {
          const [from, to = from] = range.split('-').map(Number)
          return sum + ((to as number) - (from as number) + 1)
        }, 0)
      return {
        id,
        port: Number(/:(\d+)@/.exec(address)?.[1]),
        role: flags.includes('master') ? 'master' : 'replica',
        masterId: master === '-' ? undefined : master,
        failing: flags.includes('fail'),
        slots,
      }
    })
}

/** Starts three masters with one replica each; a node unreachable for a second is failed over. */
export function startReplicatedCluster(): Promise<RedisCluster> {
  return startCluster({ replicas: 1, nodeTimeoutMs: 1000 })
}

/**
 * Waits until the cluster has promoted the replica of the killed master: every live node sees it
 * as a master holding slots, and answers `cluster_state:ok`. Returns the promoted node.
 */
export async function waitForClusterPromotion(cluster: RedisCluster, killed: RedisServer, timeoutMs = 20_000): Promise<RedisServer> {
  const live = cluster.nodes.filter((node) => node !== killed)
  const view = await clusterNodes(live[0] as RedisServer)
  const killedId = view.find((node) => node.port === killed.port)?.id
  const replicaPort = view.find((node) => node.masterId === killedId)?.port
  const promoted = cluster.nodes.find((node) => node.port === replicaPort)
  if (promoted === undefined) throw new Error(`no replica of ${killed.port} in the cluster`)
  await waitUntil(`the cluster to promote ${promoted.port}`, timeoutMs, async () => {
    for (const node of live) {
      const nodes = await clusterNodes(node)
      const seen = nodes.find((n) => n.port === promoted.port)
      if (!(seen?.role === 'master' && seen.slots > 0)) return false
      if (!(await node.cli('cluster', 'info')).includes('cluster_state:ok')) return false
    }
    return true
  })
  return promoted
}

/** Restarts a killed cluster node (with its nodes.conf, so it rejoins as a replica) and waits until it is in sync. */
export async function rejoinCluster(node: RedisServer, timeoutMs = 20_000): Promise<void> {
  await node.restart()
  await waitUntil(`cluster node ${node.port} back as a replica in sync`, timeoutMs, async () => {
    const info = await node.cli('info', 'replication')
    return info.includes('role:slave') && info.includes('master_link_status:up')
  })
}

/** The hash slot of each key, as the cluster computes it, and the port of the master serving it now. */
export async function placesOf(node: RedisServer, keys: string[]): Promise<Map<string, { slot: number; port: number }>> {
  const connection = new Redis({ host: HOST, port: node.port })
  try {
    const ranges = (await connection.call('cluster', 'slots')) as Array<[number, number, [string, number]]>
    const places = new Map<string, { slot: number; port: number }>()
    for (const key of keys) {
      const slot = Number(await connection.call('cluster', 'keyslot', key))
      const range = ranges.find(([from, to]) => slot >= from && slot <= to)
      places.set(key, { slot, port: range?.[2][1] ?? 0 })
    }
    return places
  } finally {
    connection.disconnect()
  }
}

export interface Migration {
  slots: number
  keys: number
}

/**
 * Moves each slot from the master that holds it to the next master (in port order), the way
 * `redis-cli --cluster reshard` does: IMPORTING on the target, MIGRATING on the source, MIGRATE of
 * its keys in batches, then SETSLOT NODE on every master. `pauseMs` is spent in each state while
 * traffic flows, so requests meet both ASK (during) and MOVED (after).
 */
export async function migrateSlots(cluster: RedisCluster, slots: Iterable<number>, pauseMs = 40): Promise<Migration> {
  const view = await clusterNodes(cluster.nodes[0] as RedisServer)
  const masters = view.filter((node) => node.role === 'master' && !node.failing && node.slots > 0).sort((a, b) => a.port - b.port)
  const connections = new Map(masters.map((node) => [node.id, new Redis({ host: HOST, port: node.port })]))
  const done: Migration = { slots: 0, keys: 0 }
  try {
    for (const slot of slots) {
      const owner = await ownerOf(connections, slot)
      const index = masters.findIndex((node) => node.id === owner)
      const source = masters[index] as ClusterNode
      const target = masters[(index + 1) % masters.length] as ClusterNode
      const from = connections.get(source.id) as Redis
      const to = connections.get(target.id) as Redis
      await to.call('cluster', 'setslot', slot, 'importing', source.id)
      await from.call('cluster', 'setslot', slot, 'migrating', target.id)
      await sleep(pauseMs)
      for (;;) {
        const keys = (await from.call('cluster', 'getkeysinslot', slot, 100)) as string[]
        if (keys.length === 0) break
        await from.call('migrate', HOST, target.port, '', 0, 5000, 'keys', ...keys)
        done.keys += keys.length
        await sleep(pauseMs)
      }
      await to.call('cluster', 'setslot', slot, 'node', target.id)
      await from.call('cluster', 'setslot', slot, 'node', target.id)
      for (const [id, connection] of connections) if (id !== source.id && id !== target.id) await connection.call('cluster', 'setslot', slot, 'node', target.id)
      done.slots++
      await sleep(pauseMs)
    }
  } finally {
    for (const connection of connections.values()) connection.disconnect()
  }
  return done
}

/** The id of the master that serves `slot`, from CLUSTER SLOTS. */
async function ownerOf(connections: Map<string, Redis>, slot: number): Promise<string> {
  const any = connections.values().next().value as Redis
  const ranges = (await any.call('cluster', 'slots')) as Array<[number, number, [string, number, string]]>
  for (const [from, to, [, , id]] of ranges) if (slot >= from && slot <= to) return id
  throw new Error(`no master serves slot ${slot}`)
}

/** redis-cli's reply to `SENTINEL MASTER` (one line per name and value) as a map. */
function fields(text: string): Map<string, string> {
  const lines = text.trim().split('\n')
  const map = new Map<string, string>()
  for (let i = 0; i + 1 < lines.length; i += 2) map.set(lines[i] as string, lines[i + 1] as string)
  return map
}
