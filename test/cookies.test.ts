import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Context } from 'koa'
import { cookieReader, cookieWriter, type CookieOptions } from '../src/cookies.js'
import { SessionOptionError } from '../src/errors.js'
import { koaApp, listen, type Running } from './helpers/http.js'

// pillarjs/cookies (Koa's ctx.cookies) is the oracle: the same calls must give the same headers.

interface Case {
  options: CookieOptions
  maxAge: number | null | undefined
}

const CASES: Case[] = [
  { options: { path: '/', httpOnly: true, sameSite: 'lax', overwrite: true }, maxAge: 86_400_000 },
  { options: { path: '/', httpOnly: true, sameSite: 'lax', overwrite: true }, maxAge: undefined },
  { options: { path: '/', httpOnly: true, sameSite: 'lax', overwrite: true }, maxAge: null },
  { options: { path: '/app', domain: 'example.com', priority: 'high', sameSite: 'strict', httpOnly: false }, maxAge: 60_000 },
  { options: { sameSite: true, partitioned: true, secure: false, httpOnly: true }, maxAge: 1000 },
  { options: { path: '/', expires: new Date('2031-02-03T04:05:06Z') }, maxAge: 60_000 },
  { options: { path: '/', expires: new Date('2031-02-03T04:05:06Z') }, maxAge: null },
  { options: { path: '/', sameSite: false, httpOnly: true }, maxAge: 0 },
  { options: {}, maxAge: 5000 },
]

/** Sets the cookies with pillarjs/cookies, as ctx.cookies.set does, and returns the Set-Cookie headers. */
function theirs(ctx: Context, pairs: [string, string][], { options, maxAge }: Case): string[] {
  const attributes: Record<string, unknown> = { ...options, signed: false }
  if (maxAge === null) attributes.expires = new Date(0)
  else if (maxAge !== undefined && !options.expires) attributes.maxAge = maxAge
  for (const [name, value] of pairs) ctx.cookies.set(name, value, attributes)
  return ctx.res.getHeader('set-cookie') as string[]
}

describe('cookieWriter', () => {
  let server: Running
  let check: (ctx: Context) => unknown = () => undefined

  before(async () => {
    const app = koaApp()
    app.proxy = true
    app.use((ctx) => {
      ctx.body = { result: check(ctx) }
    })
    server = await listen(app)
  })
  after(() => server.close())

  async function inRequest<T>(fn: (ctx: Context) => T, headers: Record<string, string> = {}): Promise<T> {
    check = fn
    const response = await fetch(server.url, { headers })
    return ((await response.json()) as { result: T }).result
  }

  for (const [index, testCase] of CASES.entries()) {
    it(`writes what ctx.cookies.set writes (case ${index + 1}: ${JSON.stringify(testCase)})`, async () => {
      // The two can straddle a second: then the later one's expiry is one second on. Retried once.
      for (let attempt = 0; ; attempt++) {
        // A cleared cookie has an empty value (ctx.cookies forces the epoch expiry on those).
        const pairs: [string, string][] = testCase.maxAge === null ? [['koa.sid', ''], ['koa.sid.sig', 'sig-of-empty']] : [['koa.sid', 'id-value_123'], ['koa.sid.sig', 'sig-value']]
        const { ours, oracle } = await inRequest((ctx) => {
          const oracle = theirs(ctx, pairs, testCase)
          ctx.res.removeHeader('set-cookie')
          cookieWriter(testCase.options)(ctx, pairs, testCase.maxAge)
          return { ours: ctx.res.getHeader('set-cookie') as string[], oracle }
        })
        if (attempt === 0 && JSON.stringify(ours) !== JSON.stringify(oracle)) continue
        assert.deepEqual(ours, oracle)
        break
      }
    })
  }

  it('marks cookies secure on a secure request unless told otherwise, as ctx.cookies does', async () => {
    const https = { 'x-forwarded-proto': 'https' }
    const [ours, oracle] = await inRequest((ctx) => {
      const testCase: Case = { options: { path: '/', httpOnly: true }, maxAge: undefined }
      const oracle = theirs(ctx, [['a', 'b']], testCase)
      ctx.res.removeHeader('set-cookie')
      cookieWriter(testCase.options)(ctx, [['a', 'b']], undefined)
      return [ctx.res.getHeader('set-cookie'), oracle]
    }, https)
    assert.deepEqual(ours, ['a=b; path=/; secure; httponly'])
    assert.deepEqual(ours, oracle)
    const explicit = await inRequest((ctx) => {
      cookieWriter({ secure: false })(ctx, [['a', 'b']], undefined)
      return ctx.res.getHeader('set-cookie')
    }, https)
    assert.deepEqual(explicit, ['a=b; path=/; httponly'])
  })

  it('replaces earlier cookies of the same name with overwrite, keeps the others, and appends without it', async () => {
    const replaced = await inRequest((ctx) => {
      ctx.cookies.set('koa.sid', 'old', { signed: false })
      ctx.cookies.set('other', 'kept', { signed: false })
      cookieWriter({ overwrite: true })(ctx, [['koa.sid', 'new']], undefined)
      return ctx.res.getHeader('set-cookie')
    })
    assert.deepEqual(replaced, ['other=kept; path=/; httponly', 'koa.sid=new; path=/; httponly'])
    const appended = await inRequest((ctx) => {
      ctx.res.setHeader('Set-Cookie', 'koa.sid=old')
      cookieWriter({})(ctx, [['koa.sid', 'new']], undefined)
      return ctx.res.getHeader('set-cookie')
    })
    assert.deepEqual(appended, ['koa.sid=old', 'koa.sid=new; path=/; httponly'])
  })

  it('refuses invalid attribute values when the options are read, naming the option', () => {
    assert.throws(() => cookieWriter({ path: '/a;b' }), (e: Error) => e instanceof SessionOptionError && /cookie\.path/.test(e.message))
    assert.throws(() => cookieWriter({ domain: 'exa mple.com' }), /cookie\.domain/)
    assert.throws(() => cookieWriter({ priority: 'urgent' as 'high' }), /cookie\.priority/)
    assert.throws(() => cookieWriter({ sameSite: 'sometimes' as 'lax' }), /cookie\.sameSite/)
  })
})

describe('cookieReader', () => {
  const headers = [
    'koa.sid=abc',
    'x=1; koa.sid=abc; koa.sid.sig=def',
    'koa.sid.sig=def; koa.sid=abc',
    'xkoa.sid=nope; koa.sid=abc',
    'koa.sid="quoted"',
    'koa.sid=first; koa.sid=second',
    'koa.sid=',
    ';;  koa.sid=spaced ; y=2',
    'koa_sid=nope',
    'koa.sidx=nope',
    '',
  ]

  it('reads what ctx.cookies.get(name, { signed: false }) reads, for every header', async () => {
    const app = koaApp()
    const read = cookieReader('koa.sid')
    const readSig = cookieReader('koa.sid.sig')
    app.use((ctx) => {
      ctx.body = {
        ours: [read(ctx) ?? null, readSig(ctx) ?? null],
        oracle: [ctx.cookies.get('koa.sid', { signed: false }) ?? null, ctx.cookies.get('koa.sid.sig', { signed: false }) ?? null],
      }
    })
    const server = await listen(app)
    try {
      for (const cookie of headers) {
        const response = await fetch(server.url, { headers: cookie === '' ? {} : { cookie } })
        const { ours, oracle } = (await response.json()) as { ours: unknown; oracle: unknown }
        assert.deepEqual(ours, oracle, `cookie header ${JSON.stringify(cookie)}`)
      }
    } finally {
      await server.close()
    }
  })
})
