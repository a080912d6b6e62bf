/**
 * Whole requests through a real Koa server on RedisStore, for each client: the shared session
 * behaviour suite, then concurrent requests that lose nothing, counters that add up, an outage
 * that answers 503 in time and heals without restarting the app, and what each kind of request
 * costs Redis (counted from INFO, not timed).
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import type { Context } from 'koa'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { session, type SessionOptions } from '../../src/index.js'
import { RedisStore } from '../../src/stores/redis/index.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import { parseInfo, startRedis, type RedisServer } from '../helpers/redis-server.js'
import { sessionBehaviour } from './behaviour.js'

interface Opened {
  store: RedisStore
  close(): Promise<void>
}
const CLIENTS: Array<{ name: string; open(url: string, timeoutMs: number): Promise<Opened> }> = [
  {
    name: 'ioredis (own connection from url)',
    async open(url, timeoutMs) {
      const store = new RedisStore({ url, timeoutMs })
      return { store, close: () => store.close() }
    },
  },
  {
    name: 'node-redis (createClient)',
    async open(url, timeoutMs) {
      const client = await createClient({ url }).on('error', () => undefined).connect()
      return { store: new RedisStore({ client, timeoutMs }), close: async () => client.destroy() }
    },
  },
]

const TIMEOUT_MS = 500
// The most a 503 may take beyond timeoutMs: the HTTP round trip and the event loop's slack.
const SLACK_MS = 300

/** An app whose routes read, change and count session data. */
async function app(store: RedisStore, options: SessionOptions = {}): Promise<{ running: Running; errors: Error[] }> {
  const koa = koaApp()
  const errors: Error[] = []
  koa.on('error', (error: Error) => errors.push(error))
  koa.use(session({ ...options, store }))
  koa.use(async (ctx: Context) => {
    const query = ctx.query as Record<string, string>
    switch (ctx.path) {
      case '/get':
        ctx.body = ctx.session.toJSON()
        break
      case '/set':
        ctx.session[query.key as string] = query.value
        ctx.body = { ok: true }
        break
      case '/inc':
        ctx.body = { n: await ctx.session.increment('n') }
        break
      case '/fill': // about 1 KB of session data
        for (let i = 0; i < 10; i++) ctx.session[`item${i}`] = 'x'.repeat(90)
        ctx.body = { ok: true }
        break
      case '/untouched':
        ctx.body = 'nothing read'
        break
    }
  })
  return { running: await listen(koa), errors }
}

let shared: RedisServer
before(async () => {
  shared = await startRedis()
})
after(() => shared?.close())
for (const kind of CLIENTS) sessionBehaviour(`RedisStore, ${kind.name}`, () => kind.open(shared.url, 2000))

for (const kind of CLIENTS) {
  describe(`Whole requests on RedisStore, ${kind.name}`, () => {
    let server: RedisServer
    let opened: Opened
    let running: Running
    let errors: Error[]
    before(async () => {
      // Every acknowledged write is on disk before Redis answers, so a crash loses none of them.
      server = await startRedis(['--appendonly', 'yes', '--appendfsync', 'always'])
      opened = await kind.open(server.url, TIMEOUT_MS)
      ;({ running, errors } = await app(opened.store))
    })
    after(async () => {
      await running?.close()
      await opened?.close()
      await server?.close()
    })

    it('loses nothing over 200 rounds of two parallel requests changing different keys', async () => {
      const client = new Client(running.url)
      assert.equal((await client.get('/set?key=start&value=0')).status, 200)
      for (let round = 0; round < 200; round++) {
        const replies = await Promise.all([client.get(`/set?key=a${round}&value=${round}`), client.get(`/set?key=b${round}&value=${round}`)])
        for (const reply of replies) assert.equal(reply.status, 200, reply.body)
      }
      const data = (await client.get('/get')).json as Record<string, string>
      assert.equal(Object.keys(data).length, 401)
      for (let round = 0; round < 200; round++) {
        assert.equal(data[`a${round}`], String(round))
        assert.equal(data[`b${round}`], String(round))
      }
    })

    it('adds up 100 parallel increments exactly', async () => {
      const client = new Client(running.url)
      await client.get('/set?key=start&value=0')
      const replies = await Promise.all(Array.from({ length: 100 }, () => client.request('/inc', { method: 'POST' })))
      const counts = replies.map((reply) => (reply.json as { n: number }).n).sort((x, y) => x - y)
      assert.deepEqual(counts, Array.from({ length: 100 }, (_, i) => i + 1))
      assert.equal(((await client.get('/get')).json as { n: number }).n, 100)
    })

    it('costs Redis one HGETALL to read, nothing when lazy and untouched, HGETALL + one small MULTI to change a key', async (t) => {
      const lazy = await app(opened.store, { lazy: true })
      const probe = new Redis(server.url)
      try {
        const client = new Client(running.url)
        await client.get('/fill')
        const stored = Buffer.byteLength(JSON.stringify((await client.get('/get')).json))
        assert.ok(stored >= 1000, `the session holds ${stored} bytes`)

        /** Commands run and bytes received by Redis while `request` runs, INFO's own excluded. */
        const cost = async (request: () => Promise<unknown>) => {
          const info = async () => parseInfo(await probe.info('all'))
          const calls = (fields: Map<string, string>) => {
            const counts = new Map<string, number>()
            for (const [name, value] of fields) {
              if (name.startsWith('cmdstat_') && name !== 'cmdstat_info') counts.set(name.slice(8), Number(/calls=(\d+)/.exec(value)?.[1]))
            }
            return counts
          }
          const bytes = (fields: Map<string, string>) => Number(fields.get('total_net_input_bytes'))
          const first = await info()
          const second = await info() // what one INFO costs, to take it out again
          await request()
          const third = await info()
          const commands: Record<string, number> = {}
          const [start, end] = [calls(second), calls(third)]
          for (const [name, count] of end) if (count !== (start.get(name) ?? 0)) commands[name] = count - (start.get(name) ?? 0)
          return { commands, bytes: bytes(third) - bytes(second) - (bytes(second) - bytes(first)) }
        }

        const read = await cost(() => client.get('/get'))
        assert.deepEqual(read.commands, { hgetall: 1 })
        const untouched = await cost(async () => {
          const reply = await new Client(lazy.running.url).get('/untouched', { cookie: client.cookieHeader })
          assert.equal(reply.status, 200)
        })
        assert.deepEqual(untouched.commands, {})
        const change = await cost(() => client.get('/set?key=theme&value=dark'))
        assert.deepEqual(change.commands, { hgetall: 1, multi: 1, hset: 1, pexpire: 1, exec: 1 })
        assert.ok(change.bytes < 600 && change.bytes < stored / 2, `a one-key change sent ${change.bytes} bytes`)
        const increment = await cost(() => client.request('/inc', { method: 'POST' }))
        assert.equal(increment.commands.evalsha, 1)
        t.diagnostic(`read ${JSON.stringify(read)}; lazy untouched ${JSON.stringify(untouched)}`)
        t.diagnostic(`one-key change ${JSON.stringify(change)}; session ${stored} bytes; increment ${JSON.stringify(increment)}`)
      } finally {
        probe.disconnect()
        await lazy.running.close()
      }
    })

    it('a field another program filled with text that is not JSON: a 500 naming the key (never the text), other keys work, a write heals it', async () => {
      const client = new Client(running.url)
      await client.get('/set?key=a&value=1')
      await server.cli('hset', `koa:sess:${client.jar.get('koa.sid') ?? ''}`, 'a', 'not json{')
      const before = errors.length
      assert.equal((await client.get('/get')).status, 500)
      const message = errors[before]?.message ?? ''
      assert.match(message, /^Session key "a": the store holds text that is not JSON under this key/)
      assert.ok(!message.includes('not json{'), message)
      assert.equal((await client.get('/set?key=b&value=2')).status, 200)
      assert.equal((await client.get('/set?key=a&value=healed')).status, 200)
      assert.deepEqual((await client.get('/get')).json, { a: 'healed', b: '2' })
      errors.splice(before)
    })

    it('answers 503 within timeoutMs while Redis is down, never 2xx unstored, and heals when Redis is back', { timeout: 30_000 }, async (t) => {
      const client = new Client(running.url)
      assert.equal((await client.get('/set?key=before&value=yes')).status, 200)
      errors.length = 0
      const results: Array<{ key: string; status: number; ms: number }> = []
      let next = 0
      let stop = false
      const worker = async () => {
        while (!stop) {
          const key = `w${next++}`
          const started = Date.now()
          const reply = await client.get(`/set?key=${key}&value=${key}`)
          results.push({ key, status: reply.status, ms: Date.now() - started })
        }
      }
      const workers = [worker(), worker()]
      await sleep(150)
      await server.stop('SIGKILL')
      await sleep(2 * TIMEOUT_MS)
      const started = Date.now()
      assert.equal((await client.get('/get')).status, 503)
      assert.ok(Date.now() - started <= TIMEOUT_MS + SLACK_MS, `a read during the outage took ${Date.now() - started} ms`)
      await server.restart()
      const deadline = Date.now() + 10_000
      while (!results.some((result, i) => result.status === 200 && results.slice(0, i).some((r) => r.status === 503))) {
        assert.ok(Date.now() < deadline, 'requests did not succeed again after Redis came back')
        await sleep(50)
      }
      stop = true
      await Promise.all(workers)

      for (const result of results) assert.ok(result.status === 200 || result.status === 503, `${result.key} answered ${result.status}`)
      const failed = results.filter((result) => result.status === 503)
      assert.ok(failed.length > 0)
      for (const result of failed) assert.ok(result.ms <= TIMEOUT_MS + SLACK_MS, `${result.key} took ${result.ms} ms to fail`)
      assert.ok(errors.length >= failed.length)
      for (const error of errors) assert.match(error.message, /session store.*Redis session store unreachable/i)

      const data = (await client.get('/get')).json as Record<string, string>
      assert.equal(data.before, 'yes')
      const saved = results.filter((result) => result.status === 200)
      for (const result of saved) assert.equal(data[result.key], result.key, `${result.key} was answered 200 but is not stored`)
      const slowest = Math.max(...failed.map((result) => result.ms))
      t.diagnostic(`${saved.length} answered 200 (all stored), ${failed.length} answered 503 (slowest ${slowest} ms)`)
    })
  })
}
