/**
 * decodeKoaSessionCookie: the pure part of `importKoaSessionCookie`, checked against cookies that
 * koa-session 7 itself wrote (a real koa-session app, its Set-Cookie captured), and against
 * values it never writes: undecodable, non-objects, prototype keys, expired sessions.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Context } from 'koa'
import { decodeKoaSessionCookie } from '../src/koa-session.js'
import { Client, koaApp, listen, type Reply, type Running } from './helpers/http.js'
import { koaSession, type KoaSessionOptions } from './helpers/koa-session.js'

const HOUR = 3_600_000

const ROUTES: Record<string, (ctx: Context) => unknown> = {
  '/login': (ctx) => {
    ctx.session.user = { id: 'u1', name: 'Ånn 🍪', roles: ['admin'] }
    ctx.session.views = 3
    ctx.session.flag = false
    ctx.session.nothing = null
    ctx.session._private = 'koa-session never saves "_" keys'
  },
  '/short': (ctx) => {
    ctx.session.maxAge = 10 * 60_000
  },
  '/browser': (ctx) => {
    ctx.session.maxAge = 'session'
  },
  '/me': (ctx) => ({ data: ctx.session.toJSON(), isNew: ctx.session.isNew }),
}

const servers: Running[] = []
after(async () => {
  for (const running of servers.splice(0)) await running.close()
})

/** A koa-session 7 app on its default cookie store. */
async function koaSessionApp(options: KoaSessionOptions): Promise<Client> {
  const app = koaApp()
  app.use(koaSession(options, app))
  app.use(async (ctx) => {
    const route = ROUTES[ctx.path]
    if (route) ctx.body = (await route(ctx)) ?? 'ok'
  })
  const running = await listen(app)
  servers.push(running)
  return new Client(running.url)
}

/** The value koa-session set for its cookie in this response. */
function cookieValue(reply: Reply, name = 'koa.sess'): string {
  const line = reply.setCookies.find((cookie) => cookie.startsWith(`${name}=`))
  assert.ok(line, `koa-session set ${name}`)
  return line.slice(name.length + 1, line.indexOf(';'))
}

const base64 = (json: string): string => Buffer.from(json).toString('base64')

describe('decodeKoaSessionCookie, on cookies koa-session 7 wrote', () => {
  let client: Client
  let value: string
  let written: number
  before(async () => {
    client = await koaSessionApp({ maxAge: 2 * HOUR })
    written = Date.now()
    value = cookieValue(await client.get('/login'))
  })

  it('reads the data koa-session reads back, without its bookkeeping', async () => {
    const decoded = decodeKoaSessionCookie(value, Date.now())
    assert.ok(decoded)
    const expected = { user: { id: 'u1', name: 'Ånn 🍪', roles: ['admin'] }, views: 3, flag: false, nothing: null }
    assert.deepEqual({ ...decoded.data }, expected)
    assert.deepEqual((await client.get('/me')).json, { data: expected, isNew: false })
    assert.equal(Object.getPrototypeOf(decoded.data), null)
  })

  it('takes _expire as the expiry and _maxAge as the maxAge', () => {
    const decoded = decodeKoaSessionCookie(value, Date.now())
    assert.equal(decoded?.maxAge, 2 * HOUR)
    const expires = decoded?.expires ?? 0
    assert.ok(expires >= written + 2 * HOUR && expires <= Date.now() + 2 * HOUR, `expires ${expires}`)
  })

  it('drops the session once its _expire has come (koa-session then starts a new one)', () => {
    const { expires } = decodeKoaSessionCookie(value, Date.now()) ?? {}
    assert.ok(expires)
    assert.ok(decodeKoaSessionCookie(value, expires - 1))
    assert.equal(decodeKoaSessionCookie(value, expires), undefined)
    assert.equal(decodeKoaSessionCookie(value, expires + HOUR), undefined)
  })

  it('reads a maxAge set on the session itself', async () => {
    const reply = await client.get('/short')
    const decoded = decodeKoaSessionCookie(cookieValue(reply), Date.now())
    assert.equal(decoded?.maxAge, 10 * 60_000)
    assert.ok(Math.abs((decoded?.expires ?? 0) - (Date.now() + 10 * 60_000)) < 5_000)
  })

  it("reads a browser-session cookie (maxAge 'session': _session, no _expire)", async () => {
    const browser = await koaSessionApp({ maxAge: 'session' })
    const decoded = decodeKoaSessionCookie(cookieValue(await browser.get('/login')), Date.now())
    assert.deepEqual(decoded && { maxAge: decoded.maxAge, expires: decoded.expires, views: decoded.data.views }, {
      maxAge: 'session',
      expires: undefined,
      views: 3,
    })
    const switched = decodeKoaSessionCookie(cookieValue(await client.get('/browser')), Date.now())
    assert.equal(switched?.maxAge, 'session')
    assert.equal(switched?.expires, undefined)
  })

  it("reads koa-session's defaults (no maxAge option: 1 day in _maxAge)", async () => {
    const defaults = await koaSessionApp({})
    const decoded = decodeKoaSessionCookie(cookieValue(await defaults.get('/login')), Date.now())
    assert.equal(decoded?.maxAge, 86_400_000)
  })
})

describe('decodeKoaSessionCookie, on values koa-session never wrote', () => {
  const now = Date.now()

  it('refuses what is not base64 JSON of an object', () => {
    for (const value of ['', 'not base64 json', '!!!', base64('{"a":'), base64('null'), base64('[1,2]'), base64('"text"'), base64('42'), base64('true')]) {
      assert.equal(decodeKoaSessionCookie(value, now), undefined, value)
    }
  })

  it('never lets __proto__, constructor or prototype through, escaped or not, at any depth', () => {
    const json =
      '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}},"\\u005f_proto__":{"polluted":1},' +
      '"nested":{"prototype":1,"constructo\\u0072":2,"kept":[{"__proto__":{"polluted":1},"x":1}]},"a":1}'
    const decoded = decodeKoaSessionCookie(base64(json), now)
    assert.ok(decoded)
    assert.deepEqual(JSON.parse(JSON.stringify(decoded.data)), { nested: { kept: [{ x: 1 }] }, a: 1 })
    const merged: Record<string, unknown> = {}
    Object.assign(merged, decoded.data, decoded.data.nested)
    assert.equal(Object.getPrototypeOf(merged), Object.prototype)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
  })

  it("strips every '_' key as bookkeeping, and '$' keys, which are this library's bookkeeping", () => {
    const decoded = decodeKoaSessionCookie(base64('{"_csrf":"t","_expire":"soon","$e":1,"a":{"_inner":1}}'), now)
    assert.deepEqual({ ...decoded?.data }, { a: { _inner: 1 } })
    assert.equal(decoded?.expires, undefined, 'an _expire that is not a number is ignored, as koa-session ignores it')
  })

  it('ignores a _maxAge that is no lifetime', () => {
    for (const maxAge of ['1h', 0, -5, null]) {
      const decoded = decodeKoaSessionCookie(base64(JSON.stringify({ a: 1, _maxAge: maxAge })), now)
      assert.deepEqual(decoded && { ...decoded, data: { ...decoded.data } }, { data: { a: 1 }, maxAge: undefined, expires: undefined })
    }
  })
})
