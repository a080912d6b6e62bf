/**
 * `npm run bench [-- --quick] [--reps N] [--only id,id] [--routes /read,/write] [--profile id]`:
 * every contender of
 * bench/contenders.ts against one redis-server, under wrk, each app in its own Node process.
 *
 * CPU pinning on a 2-core machine: the app alone on CPU 0; wrk and redis-server share CPU 1, so
 * neither the load generator nor Redis takes time from the process being measured.
 *
 * Per contender: a fresh app, 1000 sessions logged in over HTTP, a check that its routes answer
 * what they should and that its sessions are where they should be (in Redis or not), a mixed
 * warm-up, then each route timed with the Redis counters read before and after. Then the race
 * scenario. The table goes to stdout and to bench/results/ (latest.md, or quick.md for --quick).
 */
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { cpus, release, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { cookieHeader, get, loginAll, type Jar } from './client.js'
import { CONTENDERS, ROUTES, SESSIONS, type Contender, type Route } from './contenders.js'
import { freePort, runPinned, startPinned, startRedis, waitFor, type BenchRedis, type RedisCounters } from './processes.js'
import { race } from './race.js'
import { tables, targets, type Measured, type Results } from './report.js'

const APP_CPU = 0
const LOAD_CPU = 1
const WRK_ARGS = ['-t2', '-c32']
const here = fileURLToPath(new URL('.', import.meta.url))
const root = join(here, '..')

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string', default: '1' },
    only: { type: 'string' },
    routes: { type: 'string' },
    profile: { type: 'string' },
  },
})
const reps = Number(flags.reps)
if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps must be a positive integer')
// wrk takes whole seconds. --quick: one mixed warm-up per contender and 1 s per route, so the
// whole run stays under a minute; full: 2 s mixed, then 1 s warm-up and 5 s timed per route.
const timing = flags.quick ? { warmup: 1, routeWarmup: 0, duration: 1 } : { warmup: 2, routeWarmup: 1, duration: 5 }
const selected = flags.only === undefined ? CONTENDERS : CONTENDERS.filter((c) => flags.only?.split(',').includes(c.id))
if (selected.length === 0) throw new Error(`--only matches none of: ${CONTENDERS.map((c) => c.id).join(', ')}`)
const routes = flags.routes === undefined ? ROUTES : ROUTES.filter((r) => flags.routes?.split(',').includes(r))
if (routes.length === 0) throw new Error(`--routes matches none of: ${ROUTES.join(', ')}`)

interface WrkSummary {
  requests: number
  durationUs: number
  p99Us: number
  errors: number
  non2xx: number
}

async function wrk(port: number, path: string, cookieFile: string, seconds: number, mixedPaths?: string): Promise<WrkSummary> {
  const args = [...WRK_ARGS, `-d${seconds}s`, '-s', join(here, 'wrk.lua'), `http://127.0.0.1:${port}${path}`, '--', cookieFile]
  if (mixedPaths !== undefined) args.push(mixedPaths)
  const output = await runPinned(LOAD_CPU, 'wrk', args, (seconds + 30) * 1000)
  const json = output.split('\n').find((line) => line.startsWith('{'))
  if (json === undefined) throw new Error(`wrk printed no summary:\n${output}`)
  return JSON.parse(json) as WrkSummary
}

function check(condition: boolean, contender: Contender, what: string): void {
  if (!condition) throw new Error(`verification failed for ${contender.name}: ${what}`)
}

/** Each route answers what it should, and the sessions are stored where they should be. */
async function verify(contender: Contender, base: string, jars: Jar[], redis: BenchRedis): Promise<void> {
  const jar: Jar = new Map(jars[1])
  check((await get(base, '/untouched', jar)) === 'ok', contender, '/untouched')
  if (contender.id !== 'bare') {
    const read = await get(base, '/read', jar)
    check(read === '1', contender, `/read answered ${read}, not the seeded counter 1`)
    const write = await get(base, '/write', jar)
    check(write === '2', contender, `/write answered ${write}, not 2`)
    const reread = await get(base, '/read', jar)
    check(reread === '2', contender, `/read after /write answered ${reread}, not 2`)
  }
  const stored = await redis.admin.dbsize()
  check(stored === (contender.redis ? SESSIONS : 0), contender, `Redis holds ${stored} keys after ${SESSIONS} logins`)
  const key = contender.redisKey?.(jars[1] as Jar)
  if (contender.redis) check(key !== undefined && (await redis.admin.exists(key)) === 1, contender, `session key ${key} is not in Redis`)
}

async function benchContender(contender: Contender, redis: BenchRedis, overhead: number, withRace: boolean, results: Results): Promise<Map<Route, Measured>> {
  await redis.admin.flushall()
  const port = await freePort()
  const profiling = flags.profile === contender.id
  const profileDir = join(tmpdir(), 'koa-atomic-session-profiles')
  const nodeArgs = [...(profiling ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []), '--import', 'tsx', join(here, 'app.ts'), contender.id, String(port), redis.url]
  const app = startPinned(APP_CPU, process.execPath, nodeArgs, { cwd: root, env: { ...process.env, NODE_ENV: 'production' } })
  const dir = await mkdtemp(join(tmpdir(), 'bench-cookies-'))
  try {
    await waitFor(app, 'ready')
    const base = `http://127.0.0.1:${port}`
    const jars = await loginAll(base, SESSIONS)
    await verify(contender, base, jars, redis)
    const cookieFile = join(dir, 'cookies.txt')
    await writeFile(cookieFile, jars.map(cookieHeader).join('\n') + '\n')

    await wrk(port, '/', cookieFile, timing.warmup, routes.join(','))
    const measured = new Map<Route, Measured>()
    for (const route of routes) {
      if (timing.routeWarmup > 0) await wrk(port, route, cookieFile, timing.routeWarmup)
      const before = await redis.counters()
      const run = await wrk(port, route, cookieFile, timing.duration)
      await sleep(50) // requests in flight when wrk stopped reach Redis before the counters are read
      const after = await redis.counters()
      const perRequest = (key: keyof RedisCounters, minus = 0): number => Math.max(0, after[key] - before[key] - minus) / run.requests
      measured.set(route, {
        requestsPerSecond: run.requests / (run.durationUs / 1e6),
        p99Ms: run.p99Us / 1000,
        commandsPerRequest: perRequest('commands'),
        bytesPerRequest: perRequest('inputBytes', overhead),
        errors: run.errors + run.non2xx,
      })
      console.error(`  ${contender.id} ${route}: ${Math.round(run.requests / (run.durationUs / 1e6))} req/s (${run.requests} requests)`)
    }
    // A profile ends with the last timed run, so `bench/top.ts --last <seconds>` can isolate it.
    if (withRace && !profiling && contender.id !== 'bare') results.races.set(contender.id, await race(base, SESSIONS))
    return measured
  } finally {
    await app.stop()
    await rm(dir, { recursive: true, force: true })
    if (profiling) console.error(`  CPU profile of ${contender.id} written to ${profileDir}`)
  }
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

function firstLine(command: string, args: string[]): string {
  const { stdout, stderr } = spawnSync(command, args, { encoding: 'utf8' })
  return `${stdout}${stderr}`.split('\n')[0]?.trim() ?? '?'
}

async function main(): Promise<void> {
  const redis = await startRedis(LOAD_CPU)
  try {
    // What reading the counters itself sends to Redis, subtracted from every byte count.
    const a = await redis.counters()
    const b = await redis.counters()
    const overhead = b.inputBytes - a.inputBytes

    const results: Results = { runs: new Map(), races: new Map() }
    const samples = new Map<string, Map<Route, Measured[]>>()
    for (let rep = 1; rep <= reps; rep++) {
      for (const contender of selected) {
        console.error(`[${rep}/${reps}] ${contender.name}`)
        const measured = await benchContender(contender, redis, overhead, rep === 1, results)
        const byRoute = samples.get(contender.id) ?? new Map<Route, Measured[]>()
        for (const [route, m] of measured) byRoute.set(route, [...(byRoute.get(route) ?? []), m])
        samples.set(contender.id, byRoute)
      }
    }
    for (const [id, byRoute] of samples) {
      const routes = new Map<Route, Measured>()
      for (const [route, list] of byRoute) {
        routes.set(route, {
          requestsPerSecond: median(list.map((m) => m.requestsPerSecond)),
          p99Ms: median(list.map((m) => m.p99Ms)),
          commandsPerRequest: median(list.map((m) => m.commandsPerRequest)),
          bytesPerRequest: median(list.map((m) => m.bytesPerRequest)),
          errors: list.reduce((sum, m) => sum + m.errors, 0),
        })
      }
      results.runs.set(id, routes)
    }

    const require = createRequire(import.meta.url)
    const koaVersion = (require('koa/package.json') as { version: string }).version
    const cpu = cpus()
    const timed = timing.routeWarmup > 0
      ? `${timing.warmup} s of mixed warm-up, then per route ${timing.routeWarmup} s of warm-up and ${timing.duration} s timed`
      : `${timing.warmup} s of mixed warm-up, then ${timing.duration} s timed per route`
    const report = [
      `# \`npm run bench${flags.quick ? ' -- --quick' : ''}\`: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      '',
      `Machine: ${cpu[0]?.model ?? '?'}, ${cpu.length} cores, Linux ${release()}; Node ${process.version}, Koa ${koaVersion}, ` +
        `Redis ${redis.version}, ${firstLine('wrk', ['-v'])}.`,
      '',
      `Each app runs alone in its own Node process pinned to CPU ${APP_CPU} (\`taskset -c ${APP_CPU}\`); \`wrk ${WRK_ARGS.join(' ')}\` ` +
        `and \`redis-server\` share CPU ${LOAD_CPU} (\`taskset -c ${LOAD_CPU}\`), so neither takes time from the app. Per contender: ` +
        `${SESSIONS} sessions logged in over HTTP (a user id, a counter and 20 preference fields, ~1 KB of JSON); every ` +
        `request carries the cookies of one of them, picked at random; ${timed}` +
        `${reps > 1 ? `; medians of ${reps} repetitions` : ''}. Redis figures are deltas of \`INFO commandstats\` ` +
        '(all calls but INFO; MULTI and EXEC count as commands) and `INFO stats` `total_net_input_bytes` over the timed run, ' +
        'divided by the requests completed. Ratios compare with bare Koa in the same run.',
      '',
      tables(results),
      '',
      'Targets (issue 5):',
      '',
      ...targets(results),
      '',
    ].join('\n')
    console.log(`\n${report}`)
    // A partial or profiled run is not a result to keep.
    if (flags.only === undefined && flags.routes === undefined && flags.profile === undefined) {
      const out = join(here, 'results', flags.quick ? 'quick.md' : 'latest.md')
      await mkdir(join(here, 'results'), { recursive: true })
      await writeFile(out, report)
      console.error(`written to ${out}`)
    }
  } finally {
    await redis.close()
  }
}

await main()
