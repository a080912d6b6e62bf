import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { MemoryStore, session } from '../../src/index.js'
import { Client, koaApp, listen, type Running } from '../helpers/http.js'
import { sessionBehaviour } from './behaviour.js'

sessionBehaviour('MemoryStore', async () => ({ store: new MemoryStore() }))

describe('MemoryStore, whole requests', () => {
  const running: Running[] = []
  after(async () => {
    for (const server of running) await server.close()
  })

  it('a request that reads its session waits for nothing before its handlers run', async () => {
    const app = koaApp()
    let waited = false
    app.use((_ctx, next) => {
      waited = false
      queueMicrotask(() => (waited = true))
      return next()
    })
    app.use(session({ store: new MemoryStore() }))
    app.use((ctx) => {
      if (ctx.path === '/login') ctx.session!.user = 'ann'
      ctx.body = { user: ctx.session!.user ?? null, waited }
    })
    const server = await listen(app)
    running.push(server)
    const client = new Client(server.url)
    await client.get('/login')
    assert.deepEqual((await client.get('/page')).json, { user: 'ann', waited: false })
  })
})
