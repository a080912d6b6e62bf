/**
 * Every process the benchmark starts: pinned to a CPU with taskset, tracked, and killed when the
 * benchmark ends in any way (done, an error, Ctrl-C). Also the redis-server and its counters.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'

const live = new Set<ChildProcess>()

process.on('exit', () => {
  for (const child of live) if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping everything the benchmark started`)
    process.exit(130)
  })
}

export interface Started {
  child: ChildProcess
  /** Everything it printed so far (stdout and stderr), for error messages. */
  output(): string
  stop(): Promise<void>
}

/** Starts `command` pinned to `cpu` (`taskset -c cpu`, which execs it: the PID is the command's). */
export function startPinned(cpu: number, command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Started {
  const child = spawn('taskset', ['-c', String(cpu), command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options })
  live.add(child)
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.once('exit', () => live.delete(child))
  return {
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
  }
}

/** Waits until `started` has printed `text`; throws with its output if it exits or takes too long. */
export async function waitFor(started: Started, text: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!started.output().includes(text)) {
    if (started.child.exitCode !== null || started.child.signalCode !== null || Date.now() > deadline) {
      throw new Error(`${started.child.spawnargs.join(' ')} did not print "${text}":\n${started.output().slice(-3000)}`)
    }
    await sleep(20)
  }
}

/** Runs `command` pinned to `cpu` to completion and returns its output. */
export async function runPinned(cpu: number, command: string, args: string[], timeoutMs: number): Promise<string> {
  const started = startPinned(cpu, command, args)
  const timer = setTimeout(() => started.child.kill('SIGKILL'), timeoutMs)
  const [code] = (await once(started.child, 'exit')) as [number | null]
  clearTimeout(timer)
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${code}:\n${started.output().slice(-3000)}`)
  return started.output()
}

/** A free loopback port, as the kernel hands one out. */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  if (address === null || typeof address === 'string') throw new Error('no free port')
  return address.port
}

export interface RedisCounters {
  /** Commands run, INFO itself excluded. */
  commands: number
  /** Bytes Redis received from its clients (`total_net_input_bytes`). */
  inputBytes: number
}

export interface BenchRedis {
  url: string
  version: string
  /** The benchmark's own connection: FLUSHALL, DBSIZE, EXISTS. */
  admin: Redis
  counters(): Promise<RedisCounters>
  close(): Promise<void>
}

/** A redis-server on a free loopback port, pinned to `cpu`, without persistence. */
export async function startRedis(cpu: number): Promise<BenchRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-redis-'))
  const port = await freePort()
  const server = startPinned(cpu, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'])
  await waitFor(server, 'Ready to accept connections', 15_000)
  const url = `redis://127.0.0.1:${port}`
  const admin = new Redis(url)
  // One replica, so the waitReplicas: 1 contender has a replica to wait for (it shares the load core).
  await admin.config('SET', 'repl-diskless-sync-delay', '0')
  const replicaDir = await mkdtemp(join(tmpdir(), 'bench-replica-'))
  const replicaPort = await freePort()
  const replica = startPinned(cpu, 'redis-server', [
    '--port', String(replicaPort), '--bind', '127.0.0.1', '--dir', replicaDir, '--save', '', '--appendonly', 'no',
    '--replicaof', '127.0.0.1', String(port),
  ])
  await waitFor(replica, 'Ready to accept connections', 15_000)
  for (let i = 0; !(await admin.info('replication')).includes(`port=${replicaPort},state=online`); i++) {
    if (i > 150) throw new Error('the bench replica did not come online within 15 s')
    await sleep(100)
  }
  const info = async (section: string): Promise<Map<string, string>> => parseInfo(await admin.info(section))
  const version = (await info('server')).get('redis_version') ?? '?'
  return {
    url,
    version,
    admin,
    async counters() {
      const stats = await info('commandstats')
      const bytes = await info('stats')
      let commands = 0
      for (const [name, value] of stats) {
        // INFO is the benchmark's own question; REPLCONF is the replica acknowledging, once a second.
        if (name === 'cmdstat_info' || name === 'cmdstat_replconf') continue
        commands += Number(/calls=(\d+)/.exec(value)?.[1] ?? 0)
      }
      return { commands, inputBytes: Number(bytes.get('total_net_input_bytes') ?? 0) }
    },
    async close() {
      admin.disconnect()
      await replica.stop()
      await server.stop()
      await rm(dir, { recursive: true, force: true })
      await rm(replicaDir, { recursive: true, force: true })
    },
  }
}

function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of text.split(/\r?\n/)) {
    const index = line.indexOf(':')
    if (index > 0 && !line.startsWith('#')) fields.set(line.slice(0, index), line.slice(index + 1))
  }
  return fields
}

/** CPU time (clock ticks) of every process on the machine that the benchmark did not start. */
export type CpuSnapshot = Map<number, number>

const CLOCK_TICKS_PER_SECOND = 100 // USER_HZ, 100 on every Linux architecture Node runs on

/**
 * The machine is shared: other processes' CPU time during a timed run tells whether its figures
 * are trustworthy. Ours are this process and its children (apps, wrk, redis-server).
 */
export async function foreignCpu(): Promise<CpuSnapshot> {
  const snapshot: CpuSnapshot = new Map()
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    // Fields after the command name (which may hold spaces) start at ") ".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const pid = Number(name)
    const ppid = Number(fields[1])
    if (pid === process.pid || ppid === process.pid) continue
    snapshot.set(pid, Number(fields[11]) + Number(fields[12]))
  }
  return snapshot
}

/** Cores' worth of CPU that other processes used between two snapshots `seconds` apart. */
export function foreignCores(before: CpuSnapshot, after: CpuSnapshot, seconds: number): number {
  let ticks = 0
  for (const [pid, now] of after) ticks += now - (before.get(pid) ?? 0)
  return ticks / CLOCK_TICKS_PER_SECOND / seconds
}

/** CPU seconds (user + system) that process `pid` has used so far. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
}

/** Waits, up to `maxSeconds`, for a second in which other processes use at most `share` of a core. */
export async function quietMoment(share: number, maxSeconds: number): Promise<void> {
  const deadline = Date.now() + maxSeconds * 1000
  while (Date.now() < deadline) {
    const before = await foreignCpu()
    await sleep(1000)
    if (foreignCores(before, await foreignCpu(), 1) <= share) return
  }
}

/** CPU seconds that core `cpu` spent running anything (user, nice, system) or lost to the host (steal). */
export async function cpuBusySeconds(cpu: number): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n').find((l) => l.startsWith(`cpu${cpu} `)) ?? ''
  const [user = 0, nice = 0, system = 0, , , , , steal = 0] = line.split(/\s+/).slice(1).map(Number)
  return (user + nice + system + steal) / CLOCK_TICKS_PER_SECOND
}
