/**
 * Real `redis-server` processes for the Redis tests: each on a free loopback port with its own
 * temporary directory, no snapshots (`--save ''`), stopped by PID. A process-exit hook kills any
 * server a crashed test run left behind.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

const run = promisify(execFile)
const HOST = '127.0.0.1'
const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of live) if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
})

export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** The running process's PID (it changes on restart). */
  readonly pid: number
  /** Runs one command with redis-cli and returns its raw output. */
  cli(...args: string[]): Promise<string>
  /** Stops the process by PID (SIGTERM by default; SIGKILL to simulate a crash) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>
  /** Sends a signal to the running process, if it runs (SIGSTOP / SIGCONT to stall it). */
  signal(signal: NodeJS.Signals): void
  /** Starts it again on the same port, with the same directory and arguments. */
  restart(): Promise<void>
  /** Stops it and removes its directory. */
  close(): Promise<void>
}

/** A free loopback port, as the kernel hands one out. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, HOST)
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** Starts a redis-server; `args` are extra configuration arguments (`['--appendonly', 'yes']`). */
export async function startRedis(args: string[] = []): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'koa-atomic-session-redis-'))
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const config = ['--port', String(port), '--bind', HOST, '--dir', dir, '--save', '', '--appendonly', 'no', ...args]
    try {
      return await serve(port, dir, config)
    } catch (error) {
      // Another process may have taken the port between freePort() and redis-server's bind.
      if (attempt >= 3) {
        await rm(dir, { recursive: true, force: true })
        throw error
      }
    }
  }
}

async function serve(port: number, dir: string, config: string[]): Promise<RedisServer> {
  let child = await launch(port, config)
  const server: RedisServer = {
    port,
    url: `redis://${HOST}:${port}`,
    get pid() {
      return child.pid as number
    },
    async cli(...args) {
      const { stdout } = await run('redis-cli', ['-h', HOST, '-p', String(port), ...args])
      return stdout
    },
    async stop(signal = 'SIGTERM') {
      await kill(child, signal)
    },
    signal(signal) {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, signal)
    },
    async restart() {
      await kill(child, 'SIGTERM')
      child = await launch(port, config)
    },
    async close() {
      await kill(child, 'SIGKILL')
      await rm(dir, { recursive: true, force: true })
    },
  }
  return server
}

async function launch(port: number, config: string[]): Promise<ChildProcess> {
  const child = spawn('redis-server', config, { stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.once('exit', () => live.delete(child))
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break
    if (await ping(port)) return child
    await sleep(20)
  }
  await kill(child, 'SIGKILL')
  throw new Error(`redis-server on port ${port} did not start:\n${output.slice(-2000)}`)
}

async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exited = once(child, 'exit')
  process.kill(child.pid, signal)
  await exited
}

/** Whether a Redis on `port` answers PING with PONG (not LOADING, not refused). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, HOST)
    let reply = ''
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1000, () => done(false))
    socket.on('error', () => done(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

// Redis waits 5 s before a diskless full sync, for more replicas to share it; tests have one.
const NO_SYNC_DELAY = ['--repl-diskless-sync-delay', '0']

/** Starts a replica of `master` and waits until the master counts it as online (in sync). */
export async function startReplica(master: RedisServer, args: string[] = []): Promise<RedisServer> {
  await master.cli('config', 'set', 'repl-diskless-sync-delay', '0')
  const replica = await startRedis(['--replicaof', HOST, String(master.port), ...NO_SYNC_DELAY, ...args])
  try {
    await waitUntil(`replica ${replica.port} in sync with ${master.port}`, 10_000, async () =>
      (await master.cli('info', 'replication')).includes(`port=${replica.port},state=online`),
    )
  } catch (error) {
    await replica.close()
    throw error
  }
  return replica
}

/** Polls `check` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(50)
  }
}

/** The master group name `startSentinel` monitors. */
export const SENTINEL_MASTER = 'mymaster'

export interface SentinelOptions {
  /** Sentinels that must agree the master is down before a failover. Default 1. */
  quorum?: number
  /** How long the master must be unreachable to be considered down. Default 2000. */
  downAfterMs?: number
  /** Sentinel's failover-timeout. Default Sentinel's own (3 minutes). */
  failoverTimeoutMs?: number
}

/** Starts a Sentinel (redis-server --sentinel) monitoring `master` as `SENTINEL_MASTER`. */
export async function startSentinel(master: RedisServer, options: SentinelOptions = {}): Promise<RedisServer> {
  const { quorum = 1, downAfterMs = 2000, failoverTimeoutMs } = options
  const dir = await mkdtemp(join(tmpdir(), 'koa-atomic-session-sentinel-'))
  const port = await freePort()
  const file = join(dir, 'sentinel.conf')
  await writeFile(
    file,
    [
      `port ${port}`,
      `bind ${HOST}`,
      `dir ${dir}`,
      `sentinel monitor ${SENTINEL_MASTER} ${HOST} ${master.port} ${quorum}`,
      `sentinel down-after-milliseconds ${SENTINEL_MASTER} ${downAfterMs}`,
      ...(failoverTimeoutMs === undefined ? [] : [`sentinel failover-timeout ${SENTINEL_MASTER} ${failoverTimeoutMs}`]),
      '',
    ].join('\n'),
  )
  try {
    return await serve(port, dir, [file, '--sentinel'])
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

export interface RedisCluster {
  /** Every node: the masters first, then (with `replicas`) the replicas, as created. */
  readonly nodes: RedisServer[]
  /** Every master's address as created, for a cluster client's root nodes. */
  readonly addresses: Array<{ host: string; port: number }>
  close(): Promise<void>
}

export interface ClusterOptions {
  /** Replicas per master. Default 0. */
  replicas?: number
  /** cluster-node-timeout: how long a node may be unreachable before it is failed over. Default 2000. */
  nodeTimeoutMs?: number
}

/**
 * Starts three masters (and `replicas` replicas of each) with cluster mode on, joins them into one
 * cluster, and waits for `cluster_state:ok` on every node and every replica in sync.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<RedisCluster> {
  const { replicas = 0, nodeTimeoutMs = 2000 } = options
  const nodes: RedisServer[] = []
  try {
    for (let i = 0; i < 3 * (1 + replicas); i++) {
      const bus = await freePort()
      nodes.push(
        await startRedis([
          '--cluster-enabled', 'yes',
          '--cluster-config-file', 'nodes.conf',
          '--cluster-port', String(bus),
          '--cluster-node-timeout', String(nodeTimeoutMs),
          ...NO_SYNC_DELAY,
        ]),
      )
    }
    const addresses = nodes.map((node) => `${HOST}:${node.port}`)
    // redis-cli makes the first three the masters, and the rest their replicas.
    await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', String(replicas), '--cluster-yes'])
    const deadline = Date.now() + 15_000
    for (const node of nodes) {
      while (!(await node.cli('cluster', 'info')).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error(`cluster node ${node.port} never reached cluster_state:ok`)
        await sleep(50)
      }
    }
    for (const node of nodes.slice(3)) {
      await waitUntil(`cluster replica ${node.port} in sync`, 15_000, async () =>
        (await node.cli('info', 'replication')).includes('master_link_status:up'),
      )
    }
  } catch (error) {
    await Promise.all(nodes.map((node) => node.close()))
    throw error
  }
  return {
    nodes,
    addresses: nodes.slice(0, 3).map((node) => ({ host: HOST, port: node.port })),
    close: async () => {
      await Promise.all(nodes.map((node) => node.close()))
    },
  }
}

/** Fields of an INFO section (`INFO commandstats`, `INFO stats`) as a name → value map. */
export function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of text.split(/\r?\n/)) {
    const index = line.indexOf(':')
    if (index > 0 && !line.startsWith('#')) fields.set(line.slice(0, index), line.slice(index + 1))
  }
  return fields
}
