/**
 * The results as markdown: the throughput table, the lost updates, and the targets of issue 5,
 * each marked met or missed with the numbers that decide it.
 */
import { BARE, CONTENDERS, ROUTES, type Contender, type Route } from './contenders.js'

export interface Measured {
  requestsPerSecond: number
  p99Ms: number
  /** The app process's CPU time (user + system) per request: its cost, whatever else the machine did. */
  appCpuUs: number
  /** Commands and bytes sent to Redis per completed request (0 for contenders off Redis). */
  commandsPerRequest: number
  bytesPerRequest: number
  /** Socket errors and non-2xx answers during the timed run. */
  errors: number
  /** Cores' worth of CPU used by processes the benchmark did not start, during the timed run. */
  foreignCores: number
}

/** Past this share of a core taken by other processes, a run's figures are marked as disturbed. */
export const DISTURBED = 0.1

export interface Results {
  /** By contender id, then route: the run kept for the table (the least disturbed). */
  runs: Map<string, Map<Route, Measured>>
  /** By contender id, then route: every round's run, in round order (the ratios pair them). */
  rounds: Map<string, Map<Route, Measured[]>>
  /** Lost updates by contender id. */
  races: Map<string, { lost: number; updates: number }>
}

const fixed = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '—')

export function tables(results: Results): string {
  const lines = [
    '| contender | route | req/s | p99 ms | × bare Koa | app CPU µs/req | Redis cmds/req | Redis bytes/req |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
  ]
  for (const contender of CONTENDERS) {
    const routes = results.runs.get(contender.id)
    if (!routes) continue
    for (const route of ROUTES) {
      const m = routes.get(route)
      if (!m) continue
      const errors = m.errors > 0 ? ` (${m.errors} errors)` : ''
      const disturbed = m.foreignCores > DISTURBED ? ` ⚠ ${Math.round(100 * m.foreignCores)} %` : ''
      lines.push(
        `| ${contender.name} | \`${route}\` | ${Math.round(m.requestsPerSecond)}${errors}${disturbed} | ${fixed(m.p99Ms, 2)} | ` +
          `${fixed(ratio(results, contender, route), 2)} | ${fixed(m.appCpuUs, 1)} | ${fixed(m.commandsPerRequest, 2)} | ${Math.round(m.bytesPerRequest)} |`,
      )
    }
  }
  const disturbed = [...results.runs.values()].some((routes) => [...routes.values()].some((m) => m.foreignCores > DISTURBED))
  if (disturbed) {
    lines.push('', '⚠ N %: during this timed run (the most disturbed of its rounds), processes the benchmark did not start used N % of a core; its throughput is less reliable than its app CPU per request.')
  }
  lines.push('', '| contender | lost updates |', '|---|---:|')
  for (const contender of CONTENDERS) {
    const race = results.races.get(contender.id)
    if (race) lines.push(`| ${contender.name} | ${fixed((100 * race.lost) / race.updates, 1)} % (${race.lost} of ${race.updates}) |`)
  }
  return lines.join('\n')
}

const throughput = (m: Measured): number => m.requestsPerSecond
const cheapness = (m: Measured): number => 1 / m.appCpuUs

/**
 * How `mine` compares with `other` on `route` by `figure`: the median, over the rounds, of the
 * ratio of their two runs in the same round. Runs of one round are a few minutes apart at most,
 * so the machine's slower drifts fall on both and cancel out.
 */
function paired(results: Results, mine: string, other: string, route: Route, figure: (m: Measured) => number): number {
  const a = results.rounds.get(mine)?.get(route)
  const b = results.rounds.get(other)?.get(route)
  if (!a || !b || a.length !== b.length || a.length === 0) return NaN
  const ratios = a.map((m, i) => figure(m) / figure(b[i] as Measured)).sort((x, y) => x - y)
  const middle = ratios.length >> 1
  return ratios.length % 2 === 1 ? (ratios[middle] as number) : ((ratios[middle - 1] as number) + (ratios[middle] as number)) / 2
}

function ratio(results: Results, contender: Contender, route: Route): number {
  return paired(results, contender.id, BARE.id, route, throughput)
}

const measured = (results: Results, id: string, route: Route): Measured | undefined => results.runs.get(id)?.get(route)

/** The fastest of the peers on Redis on `route`: the targets' yardstick. */
function bestPeer(results: Results, route: Route): { contender: Contender; m: Measured } | undefined {
  let best: { contender: Contender; m: Measured } | undefined
  for (const contender of CONTENDERS.filter((c) => c.redis && !c.ours && !c.reference)) {
    const m = measured(results, contender.id, route)
    if (m && (!best || m.requestsPerSecond > best.m.requestsPerSecond)) best = { contender, m }
  }
  return best
}

/** The references, one line each: how far below bare Koa (or above the best peer) the floor of a route is. */
export function references(results: Results): string[] {
  const out: string[] = []
  for (const contender of CONTENDERS) {
    for (const route of contender.reference ?? []) {
      const m = measured(results, contender.id, route)
      if (!m) continue
      const peer = contender.redis ? bestPeer(results, route) : undefined
      const overPeer = peer ? `, ${fixed(paired(results, contender.id, peer.contender.id, route, throughput), 2)}× ${peer.contender.name}` : ''
      out.push(`- \`${route}\`, ${contender.name.replace(/^reference: /, '')}: ${fixed(ratio(results, contender, route), 2)}× bare${overPeer}`)
    }
  }
  return out
}

/** The targets, one line each: `[x]` met, `[ ]` missed (or not measured in this run). */
export function targets(results: Results): string[] {
  const get = (id: string, route: Route): Measured | undefined => measured(results, id, route)
  const byId = (id: string): Contender => CONTENDERS.find((c) => c.id === id) as Contender
  const ours = CONTENDERS.filter((c) => c.ours)
  const oursOnRedis = ours.filter((c) => c.redis && !c.option)
  const line = (met: boolean, text: string): string => `- [${met ? 'x' : ' '}] ${text}`
  // The same comparison by the app's CPU time per request, which other load on a shared machine
  // disturbs far less than throughput: shown beside each throughput ratio, not judged.
  const byCpu = (mine: string, other: string, route: Route): string => {
    const r = paired(results, mine, other, route, cheapness)
    return Number.isFinite(r) ? ` [by app CPU per request: ${fixed(r, 2)}×]` : ''
  }
  const out: string[] = []

  const lazy = get('redis-lazy', '/untouched')
  if (lazy) {
    const r = ratio(results, byId('redis-lazy'), '/untouched')
    out.push(line(r >= 0.95 && lazy.commandsPerRequest === 0, `\`/untouched\`, lazy: ${fixed(r, 2)}× bare (≥ 0.95)${byCpu('redis-lazy', BARE.id, '/untouched')}, ${fixed(lazy.commandsPerRequest, 2)} Redis commands (0)`))
  }
  for (const route of ['/read', '/write'] as const) {
    const peer = bestPeer(results, route)
    if (!peer) continue
    for (const contender of oursOnRedis) {
      const m = get(contender.id, route)
      if (!m) continue
      const speedup = paired(results, contender.id, peer.contender.id, route, throughput)
      const speed = `${fixed(speedup, 2)}× ${peer.contender.name} (≥ 1.5)${byCpu(contender.id, peer.contender.id, route)}`
      if (route === '/read') {
        const oneCommand = Math.abs(m.commandsPerRequest - 1) < 0.02
        out.push(line(speedup >= 1.5 && oneCommand, `\`/read\`, ${contender.name}: ${speed}, ${fixed(m.commandsPerRequest, 2)} Redis commands (exactly 1)`))
      } else {
        const share = m.bytesPerRequest / peer.m.bytesPerRequest
        out.push(line(speedup >= 1.5 && share <= 0.25, `\`/write\`, ${contender.name}: ${speed}, ${Math.round(m.bytesPerRequest)} bytes to Redis = ${fixed(100 * share, 1)} % of its ${Math.round(peer.m.bytesPerRequest)} (≤ 25 %)`))
      }
    }
  }
  for (const route of ['/read', '/write'] as const) {
    const r = ratio(results, byId('memory'), route)
    const cpu = byCpu('memory', BARE.id, route)
    if (Number.isFinite(r)) out.push(line(r >= 0.85, `\`${route}\`, ours on MemoryStore: ${fixed(r, 2)}× bare (≥ 0.85)${cpu}`))
  }
  for (const contender of ours) {
    const race = results.races.get(contender.id)
    if (race) out.push(line(race.lost === 0, `lost updates, ${contender.name}: ${race.lost} of ${race.updates} (0)`))
  }
  return out
}
