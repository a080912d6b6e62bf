/**
 * Many processes, one truth: two app processes (one on ioredis, one on node-redis) share one Redis.
 * Parallel requests for one session, spread over both, lose no update; each process sees the
 * other's writes on the very next request.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { Client } from '../helpers/http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const FIXTURE = fileURLToPath(new URL('../fixtures/app-process.ts', import.meta.url))

const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
})

/** Starts test/fixtures/app-process.ts and resolves its URL once it listens. */
async function startApp(redisUrl: string, client: 'ioredis' | 'node-redis'): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL: redisUrl, CLIENT: client },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let output = ''
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app process (${client}) did not start within 20 s:\n${output}`)), 20_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /listening (http:\/\/\S+)/.exec(output)
      if (match) {
        clearTimeout(timer)
        resolve(match[1] as string)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`app process (${client}) exited with ${code}:\n${output}`))
    })
  })
  return { url, child }
}

async function stopApp(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000)
  await exited
  clearTimeout(timer)
}

describe('two app processes on one Redis', () => {
  let redis: RedisServer
  const apps: Array<{ url: string; child: ChildProcess }> = []

  before(async () => {
    redis = await startRedis()
    apps.push(...(await Promise.all([startApp(redis.url, 'ioredis'), startApp(redis.url, 'node-redis')])))
  })
  after(async () => {
    for (const app of apps) await stopApp(app.child)
    await redis?.close()
  })

  it('destroyByUser ends 50 sessions of one user opened through both processes, except the current one', async () => {
    const [a, b] = apps.map((app) => app.url) as [string, string]
    const user = `user-${process.pid}-${Date.now()}`
    const clients = Array.from({ length: 50 }, () => new Client(''))
    await Promise.all(clients.map((client, i) => client.request(`${i % 2 === 0 ? a : b}/login?user=${user}`, { method: 'POST' })))
    const current = clients[7] as Client
    const ended = (await current.request(`${a}/logout-others?user=${user}`, { method: 'POST' })).json as { ended: string[] }
    assert.equal(ended.ended.length, 49)
    const alive = await Promise.all(
      clients.map(async (client, i) => Object.keys(((await client.get(`${i % 2 === 0 ? b : a}/read`)).json as { data: object }).data).length > 0),
    )
    assert.deepEqual(alive.flatMap((isAlive, i) => (isAlive ? [i] : [])), [7])
  })

  it('loses no update from 300 parallel requests for one session spread over both processes', async (t) => {
    const [a, b] = apps.map((app) => app.url) as [string, string]
    const client = new Client('')
    assert.equal((await client.request(`${a}/write?key=start&value=yes`, { method: 'POST' })).status, 200)
    const started = Date.now()
    const replies = await Promise.all(
      Array.from({ length: 300 }, (_, i) => {
        const base = i % 2 === 0 ? a : b
        const path = i % 3 === 0 ? `/write?key=k${i}&value=v${i}` : i % 3 === 1 ? '/increment' : `/append?item=i${i}`
        return client.request(base + path, { method: 'POST' }).then((reply) => ({ i, reply }))
      }),
    )
    const ms = Date.now() - started
    for (const { i, reply } of replies) assert.equal(reply.status, 200, `request ${i}: ${reply.body}`)
    const pids = new Set(replies.map(({ reply }) => reply.headers.get('x-pid')))
    assert.equal(pids.size, 2, 'both processes answered')

    const counts = replies.filter(({ i }) => i % 3 === 1).map(({ reply }) => (reply.json as { n: number }).n)
    assert.deepEqual([...counts].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i + 1))
    for (const base of [a, b]) {
      const { data } = (await client.get(`${base}/read`)).json as { data: Record<string, unknown> }
      assert.equal(data.start, 'yes')
      for (let i = 0; i < 300; i += 3) assert.equal(data[`k${i}`], `v${i}`, `k${i} is missing on ${base}`)
      assert.equal(data.n, 100)
      const items = [...(data.items as string[])].sort()
      assert.deepEqual(items, Array.from({ length: 100 }, (_, j) => `i${3 * j + 2}`).sort())
    }
    t.diagnostic(`300 parallel requests over 2 processes (pids ${[...pids].join(', ')}) in ${ms} ms: 100 writes, 100 increments, 100 update() appends, none lost`)
  })

  it('each process sees the other\'s write on the next request (100 alternating rounds)', async () => {
    const [a, b] = apps.map((app) => app.url) as [string, string]
    const client = new Client('')
    await client.request(`${a}/write?key=start&value=yes`, { method: 'POST' })
    for (let round = 0; round < 100; round++) {
      const [writer, reader] = round % 2 === 0 ? [a, b] : [b, a]
      assert.equal((await client.request(`${writer}/write?key=r${round}&value=${round}`, { method: 'POST' })).status, 200)
      const n = ((await client.request(`${writer}/increment`, { method: 'POST' })).json as { n: number }).n
      assert.equal(n, round + 1)
      const seen = (await client.get(`${reader}/read`)).json as { pid: number; data: Record<string, unknown> }
      assert.equal(seen.data[`r${round}`], String(round), `round ${round}: the other process did not see the write`)
      assert.equal(seen.data.n, round + 1)
    }
  })
})
