/**
 * `node --import tsx bench/top.ts <file.cpuprofile> [--top 25] [--last 5] [--requests N]`: where a
 * profiled app spent its time, from a profile made by
 * `npm run bench -- --only <id> --routes <route> --profile <id>` (the app's main thread is the
 * larger of the two files it writes). `--last 5` keeps only the profile's last 5 seconds, the
 * timed run; with `--requests` (wrk's count for that run) times are also shown per request.
 * Prints the functions with the most self time, then the most inclusive time (self plus callees,
 * each function counted once per sample however deeply it recurses), then self time by package.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  endTime: number
  startTime: number
}

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '25' }, last: { type: 'string' }, requests: { type: 'string' } },
})
const file = positionals[0]
if (file === undefined) throw new Error('usage: bench/top.ts <file.cpuprofile> [--top N] [--last seconds] [--requests N]')
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const count = Number(flags.top)
const requests = flags.requests === undefined ? undefined : Number(flags.requests)
// Sample times are in µs from the profile's start; keep those within the last N seconds.
const from = flags.last === undefined ? -Infinity : profile.endTime - Number(flags.last) * 1e6

const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const parent = new Map<number, number>()
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)

const label = (node: ProfileNode): string => {
  const { functionName, url, lineNumber } = node.callFrame
  const where = url.replace(/^file:\/\/.*?\/node_modules\//, '').replace(/^file:\/\/.*?\/(src|bench)\//, '$1/')
  return `${functionName || '(anonymous)'} ${where}${lineNumber > 0 ? `:${lineNumber + 1}` : ''}`.trim()
}
const area = (node: ProfileNode): string => {
  const url = node.callFrame.url
  if (url === '') return node.callFrame.functionName.startsWith('(') ? node.callFrame.functionName : '(native)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg) return pkg[1] as string
  if (url.startsWith('node:')) return 'node internals'
  if (/\/src\//.test(url)) return 'koa-atomic-session src/'
  if (/\/bench\//.test(url)) return 'bench app'
  return url
}

const self = new Map<string, number>()
const inclusive = new Map<string, number>()
const areas = new Map<string, number>()
let total = 0
let idle = 0
let time = profile.startTime
profile.samples.forEach((sampleId, i) => {
  const delta = profile.timeDeltas[i] ?? 0
  time += delta
  if (time < from) return
  const leaf = byId.get(sampleId)
  if (!leaf) return
  if (leaf.callFrame.functionName === '(idle)') {
    idle += delta
    return
  }
  total += delta
  self.set(label(leaf), (self.get(label(leaf)) ?? 0) + delta)
  areas.set(area(leaf), (areas.get(area(leaf)) ?? 0) + delta)
  const seen = new Set<string>()
  for (let id: number | undefined = sampleId; id !== undefined; id = parent.get(id)) {
    const node = byId.get(id) as ProfileNode
    const name = label(node)
    if (seen.has(name)) continue
    seen.add(name)
    inclusive.set(name, (inclusive.get(name) ?? 0) + delta)
  }
})

const print = (title: string, table: Map<string, number>, n: number): void => {
  console.log(`\n${title}`)
  for (const [name, us] of [...table].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    const perRequest = requests === undefined ? '' : `${(us / requests).toFixed(2).padStart(7)} µs/req  `
    console.log(`${((100 * us) / total).toFixed(1).padStart(6)} %  ${(us / 1000).toFixed(0).padStart(7)} ms  ${perRequest}${name}`)
  }
}
const busy = `${(total / 1000).toFixed(0)} ms busy, ${(idle / 1000).toFixed(0)} ms idle`
console.log(`${file}: ${busy}${requests === undefined ? '' : `, ${(total / requests).toFixed(1)} µs busy per request`}`)
print('self time', self, count)
print('inclusive time', inclusive, count)
print('self time by package', areas, 15)
