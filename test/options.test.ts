import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { headerTransport, MemoryStore, session, SessionOptionError, type SessionOptions } from '../src/index.js'
import { resolveOptions } from '../src/options.js'
import { Client, koaApp, listen, type Running } from './helpers/http.js'

const servers: Running[] = []
after(async () => {
  for (const running of servers) await running.close()
})

function refuses(options: unknown, message: RegExp): void {
  assert.throws(() => session(options as SessionOptions), (error: unknown) => error instanceof SessionOptionError && message.test(error.message))
}

describe('session(options)', () => {
  it('applies the SPEC defaults', () => {
    const config = resolveOptions()
    assert.ok(config.store instanceof MemoryStore)
    assert.equal(config.prefix, 'koa:sess:')
    assert.equal(config.idBytes, 16)
    assert.equal(config.maxAge, 30 * 86_400_000)
    assert.equal(config.maxBytes, 1024 * 1024)
    assert.deepEqual(config.cookie, { path: '/', httpOnly: true, sameSite: 'lax', signed: true, overwrite: true })
    assert.deepEqual([config.rolling, config.renew, config.lazy, config.saveUninitialized], [false, false, false, false])
  })

  it('refuses unknown and invalid options, naming them', () => {
    refuses({ colour: 'red' }, /option colour is unknown/)
    refuses({ idBytes: 8 }, /option idBytes must be an integer from 16/)
    refuses({ maxAge: 'forever' }, /option maxAge must be milliseconds or a duration/)
    refuses({ absoluteMaxAge: -1 }, /option absoluteMaxAge/)
    refuses({ rolling: 'yes' }, /option rolling must be true or false/)
    refuses({ key: 'bad name;' }, /option key must be a cookie name/)
    refuses({ maxBytes: 0 }, /option maxBytes must be a positive integer/)
    refuses({ genid: 'abc' }, /option genid must be a function/)
    refuses({ cookie: { maxAge: 5 } }, /option cookie\.maxAge is not used: set the session's maxAge option/)
    refuses({ cookie: { colour: 1 } }, /option cookie\.colour is unknown/)
    refuses({ cookie: { sameSite: 'none', secure: false } }, /sameSite 'none' cannot go with cookie\.secure: false/)
    refuses({ store: { get() {} } }, /option store must implement the Store contract; missing: apply, increment, touch, destroy/)
    refuses({ transport: { get() {} } }, /option transport must be an object with get\(ctx\) and set/)
    refuses({ transport: headerTransport(), key: 'sid' }, /option key applies only to the cookie transport/)
    refuses('fast', /options must be an object/)
  })

  it("says where koa-session's options went", () => {
    refuses({ httpOnly: false }, /option httpOnly is not supported here: cookie options now live under cookie: write cookie: \{ httpOnly \}/)
    refuses({ signed: false }, /cookie: \{ signed \}/)
    refuses({ autoCommit: false }, /await ctx\.session\.save\(\)/)
    refuses({ externalKey: {} }, /headerTransport/)
    refuses({ encode: String }, /field by field as JSON/)
    refuses({ store: { get() {}, set() {}, destroy() {} } }, /looks like a koa-session store .*fromWholeObjectStore\(yourStore\)/)
  })

  it("accepts koa-session's call forms session(app, options) and session(options, app)", async () => {
    for (const form of ['app-first', 'options-first'] as const) {
      const app = koaApp()
      app.use(form === 'app-first' ? session(app, { key: 'first' }) : session({ key: 'second' }, app))
      app.use((ctx) => {
        ctx.session.form = form
        ctx.body = 'ok'
      })
      const running = await listen(app)
      servers.push(running)
      const reply = await new Client(running.url).get('/')
      assert.match(reply.setCookies[0] ?? '', form === 'app-first' ? /^first=/ : /^second=/)
    }
  })

  it('uses idBytes and genid for new ids, and refuses a genid whose ids are malformed', async () => {
    const app = koaApp()
    const errors: Error[] = []
    app.on('error', (error: Error) => errors.push(error))
    let next = 'x'.repeat(40)
    app.use(session({ genid: () => next }))
    app.use((ctx) => {
      ctx.session.a = 1
      ctx.body = { id: ctx.sessionId }
    })
    const running = await listen(app)
    servers.push(running)
    assert.deepEqual((await new Client(running.url).get('/')).json, { id: next })
    next = 'not/valid'
    assert.equal((await new Client(running.url).get('/')).status, 500)
    assert.match(errors[0]?.message ?? '', /option genid returned "not\/valid"/)

    const wide = koaApp()
    wide.use(session({ idBytes: 32 }))
    wide.use((ctx) => {
      ctx.session.a = 1
      ctx.body = { id: ctx.sessionId }
    })
    const wideRunning = await listen(wide)
    servers.push(wideRunning)
    const { id } = (await new Client(wideRunning.url).get('/')).json as { id: string }
    assert.match(id, /^[A-Za-z0-9_-]{43}$/)
  })
})
