/**
 * importKoaSessionCookie: sessions koa-session kept in its cookie move into the store on the
 * user's next visit, in one write, and the old cookie is replaced.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { MemoryStore, session, type SessionOptions } from '../../src/index.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import { recording } from '../helpers/recording-store.js'
import { koaSession } from '../helpers/koa-session.js'

const servers: Running[] = []
after(async () => {
  for (const running of servers) await running.close()
})

/** Cookies koa-session 7 (cookie store) sets for a session holding `data`. */
async function koaSessionCookies(data: Record<string, unknown>, maxAge = 3_600_000): Promise<Map<string, string>> {
  const app = koaApp()
  app.use(koaSession({ maxAge }, app))
  app.use((ctx) => {
    Object.assign(ctx.session as object, data)
    ctx.body = 'ok'
  })
  const running = await listen(app)
  servers.push(running)
  const client = new Client(running.url)
  await client.get('/')
  return client.jar
}

async function ourApp(options: SessionOptions = { importKoaSessionCookie: 'koa.sess' }) {
  const rec = recording(new MemoryStore())
  const app = koaApp()
  app.use(session({ ...options, store: rec.store }))
  app.use((ctx) => {
    if (ctx.path === '/visit') ctx.session.visits = (ctx.session.visits ?? 0) + 1
    ctx.body = { data: ctx.session.toJSON(), isNew: ctx.session.isNew, id: ctx.sessionId ?? null }
  })
  const running = await listen(app)
  servers.push(running)
  const client = new Client(running.url)
  return { client, rec }
}

describe('importKoaSessionCookie', () => {
  it("moves koa-session's cookie session into the store in one write, keeps its maxAge, and replaces the cookie", async () => {
    const old = await koaSessionCookies({ user: 'ann', cart: ['tea'] })
    const { client, rec } = await ourApp()
    for (const [name, value] of old) client.jar.set(name, value)
    const first = await client.get('/')
    assert.deepEqual((first.json as { data: unknown }).data, { user: 'ann', cart: ['tea'] })
    assert.equal((first.json as { isNew: boolean }).isNew, false)
    assert.deepEqual(rec.calls, ['apply'])
    assert.equal(rec.patches[0]?.set?.$m, 3_600_000)
    assert.ok(client.jar.has('koa.sid') && !client.jar.has('koa.sess') && !client.jar.has('koa.sess.sig'))
    const cookie = first.setCookies.find((line) => line.startsWith('koa.sid=')) ?? ''
    const expires = new Date(/expires=([^;]+)/.exec(cookie)?.[1] ?? '').getTime()
    assert.ok(expires - Date.now() <= 3_600_000 + 1_000, 'the moved session keeps the lifetime it had')
    rec.reset()
    const second = await client.get('/visit')
    assert.deepEqual((second.json as { data: unknown }).data, { user: 'ann', cart: ['tea'], visits: 1 })
    assert.deepEqual(rec.calls, ['get', 'apply'])
  })

  it("moves a session holding names of this library's API (koa-session allowed `id`) without them, instead of failing every visit", async () => {
    const old = await koaSessionCookies({ id: 7, save: 'x', user: 'ann' })
    const { client } = await ourApp()
    for (const [name, value] of old) client.jar.set(name, value)
    const first = await client.get('/')
    assert.equal(first.status, 200)
    assert.deepEqual((first.json as { data: unknown }).data, { user: 'ann' })
    assert.ok(client.jar.has('koa.sid') && !client.jar.has('koa.sess'))
    assert.deepEqual(((await client.get('/visit')).json as { data: unknown }).data, { user: 'ann', visits: 1 })
  })

  it('drops a tampered, expired or undecodable old cookie without a store operation, and starts nothing', async () => {
    const valid = await koaSessionCookies({ user: 'ann' })
    const expired = await koaSessionCookies({ user: 'bob' }, 1)
    await new Promise((resolve) => setTimeout(resolve, 5))
    const cases: Array<Map<string, string>> = [
      new Map([...valid].map(([name, value]) => [name, name.endsWith('.sig') ? 'forged' : value])),
      expired,
      new Map([['koa.sess', 'not-base64-json'], ['koa.sess.sig', 'x']]),
    ]
    for (const cookies of cases) {
      const { client, rec } = await ourApp()
      for (const [name, value] of cookies) client.jar.set(name, value)
      const reply = await client.get('/')
      assert.deepEqual(reply.json, { data: {}, isNew: true, id: null })
      assert.deepEqual(rec.calls, [])
      assert.equal(client.jar.has('koa.sess'), false, 'the old cookie is cleared')
    }
  })

  it('costs nothing when off: the old cookie is ignored', async () => {
    const old = await koaSessionCookies({ user: 'ann' })
    const { client, rec } = await ourApp({})
    for (const [name, value] of old) client.jar.set(name, value)
    assert.deepEqual((await client.get('/')).json, { data: {}, isNew: true, id: null })
    assert.deepEqual(rec.calls, [])
    assert.ok(client.jar.has('koa.sess'))
  })

  it('refuses a name that is not a cookie name', () => {
    assert.throws(() => session({ importKoaSessionCookie: 'bad name' }), /option importKoaSessionCookie must be the name of koa-session's cookie/)
  })
})
