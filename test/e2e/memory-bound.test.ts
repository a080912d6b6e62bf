/**
 * Memory: MemoryStore under 200 000 sessions stays within maxSessions and evicts the least
 * recently used first; an app on it keeps a flat heap over repeated waves of traffic. Both are
 * measured in a child process run with --expose-gc (test/fixtures/memory-app.ts), so the heap
 * holds nothing of the test runner's, and is read after a full gc.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { Agent, request } from 'node:http'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const FIXTURE = fileURLToPath(new URL('../fixtures/memory-app.ts', import.meta.url))
const HTTP_MAX_SESSIONS = 3_000
const WAVES = 6
/** Waves before the heap is expected to be flat: JIT, and the verified-cookie cache (10 000 entries) filling up. */
const WARM_UP = 3
const VISITORS = 3_000
const CONCURRENCY = 64
const MB = 1024 * 1024

interface StoreReport {
  largest: number
  maxSessions: number
  sessions: number
  baseline: number
  checkpoints: number[]
  heaps: number[]
  survivors: { hot: number; newest: number; older: number }
  expectedNewest: number
  halves: number[]
}

let child: ChildProcess | undefined
process.on('exit', () => {
  if (child?.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL')
})

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })

/** One POST; resolves the status and the `name=value` pairs of its Set-Cookie headers. */
function post(url: string, cookie?: string): Promise<{ status: number; cookies: string[] }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: cookie ? { cookie } : {} }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, cookies: (res.headers['set-cookie'] ?? []).map((line) => line.split(';')[0] as string) }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url)
  return response.json()
}

/** A visitor: logs in, counts, then rotates its id, logs out, or leaves; some send a forged cookie. */
async function visit(base: string, n: number): Promise<void> {
  const login = await post(`${base}/login?n=${n}`)
  assert.equal(login.status, 200)
  const cookie = login.cookies.join('; ')
  assert.equal((await post(`${base}/count`, cookie)).status, 200)
  if (n % 5 === 0) assert.equal((await post(`${base}/rotate`, cookie)).status, 200)
  if (n % 5 === 1) assert.equal((await post(`${base}/logout`, cookie)).status, 200)
  if (n % 10 === 2) assert.equal((await post(`${base}/count`, `${cookie.split(';')[0]}; koa.sid.sig=forged${n}`)).status, 200)
}

describe('memory', () => {
  let store: StoreReport
  let url: string

  before(async () => {
    child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', FIXTURE], {
      cwd: ROOT,
      env: { ...process.env, HTTP_MAX_SESSIONS: String(HTTP_MAX_SESSIONS) },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let output = ''
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the memory child did not get ready within 60 s:\n${output}`)), 60_000)
      child?.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        const report = /^store (.*)$/m.exec(output)
        const listening = /^listening (\S+)$/m.exec(output)
        if (report && listening) {
          clearTimeout(timer)
          store = JSON.parse(report[1] as string) as StoreReport
          url = listening[1] as string
          resolve()
        }
      })
      child?.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`the memory child exited with ${code}:\n${output}`))
      })
    })
  })
  after(async () => {
    agent.destroy()
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
  })

  it('MemoryStore under 200 000 sessions stays within maxSessions, evicts the least recently used first, and its heap stays flat', (t) => {
    assert.equal(store.sessions, 200_000)
    assert.equal(store.largest, store.maxSessions, `the store held ${store.largest} sessions, bound ${store.maxSessions}`)
    // The hot set, read every 10 000 writes, survives; of the rest exactly the newest remain.
    assert.deepEqual(store.survivors, { hot: 1_000, newest: store.expectedNewest, older: 0 })
    const [atBound, midway, end] = store.heaps as [number, number, number]
    // At its bound from 100 000 writes on: another 100 000 sessions in, 100 000 evicted, the same heap.
    assert.ok(end - midway < 2 * MB, `heap grew ${((end - midway) / MB).toFixed(2)} MB from 150 000 to 200 000 sessions`)
    assert.ok(end - atBound < 0.15 * atBound, `heap grew ${((end - atBound) / MB).toFixed(2)} MB from 100 000 to 200 000 sessions`)
    const perSession = (end - store.baseline) / store.maxSessions
    t.diagnostic(`largest ${store.largest} of bound ${store.maxSessions}; survivors ${JSON.stringify(store.survivors)}`)
    t.diagnostic(`heap after gc at ${store.checkpoints.join(' / ')} writes: ${store.heaps.map((h) => (h / MB).toFixed(2)).join(' / ')} MB (${Math.round(perSession)} bytes per stored session)`)
    t.diagnostic(`first 100 000 writes (below the bound) ${store.halves[0]} ms, next 100 000 (each evicting one) ${store.halves[1]} ms`)
  })

  it(`an app on MemoryStore({ maxSessions: ${HTTP_MAX_SESSIONS} }) keeps a flat heap over ${WAVES} waves of ${VISITORS} visitors`, { timeout: 120_000 }, async (t) => {
    const heaps: number[] = []
    const timings: number[] = []
    let next = 0
    for (let wave = 0; wave < WAVES; wave++) {
      const started = Date.now()
      const end = next + VISITORS
      const worker = async () => {
        while (next < end) await visit(url, next++)
      }
      await Promise.all(Array.from({ length: CONCURRENCY }, worker))
      timings.push(Date.now() - started)
      const { heapUsed, size } = (await getJson(`${url}/__heap`)) as { heapUsed: number; size: number }
      assert.ok(size <= HTTP_MAX_SESSIONS, `after wave ${wave + 1} the store holds ${size} sessions`)
      heaps.push(heapUsed)
    }
    const steady = heaps.slice(WARM_UP)
    const low = Math.min(...steady)
    const high = Math.max(...steady)
    const tolerance = Math.max(2 * MB, 0.1 * low)
    t.diagnostic(`heap after gc per wave: ${heaps.map((h) => (h / MB).toFixed(2)).join(', ')} MB; waves took ${timings.join(', ')} ms`)
    t.diagnostic(`after ${WARM_UP} warm-up waves: spread ${((high - low) / MB).toFixed(2)} MB (tolerance ${(tolerance / MB).toFixed(2)} MB)`)
    assert.ok(high - low <= tolerance, `the heap moved ${((high - low) / MB).toFixed(2)} MB across waves ${WARM_UP + 1}–${WAVES}`)
    assert.ok((heaps.at(-1) as number) - (heaps[WARM_UP] as number) <= tolerance / 2, 'the heap kept growing')
  })
})
