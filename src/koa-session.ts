/**
 * Everything that exists only for users coming from koa-session, in one place: its call forms,
 * the options it had that now live elsewhere or no longer apply, and the sessions it kept in
 * its cookie.
 */
import type Koa from 'koa'
import type { Context } from 'koa'
import { SessionOptionError } from './errors.js'
import { decodeValue, isDataKey } from './values.js'

const COOKIE_FLAT_OPTIONS = ['httpOnly', 'signed', 'secure', 'sameSite', 'overwrite', 'domain', 'path', 'partitioned', 'priority']

const MOVED: Record<string, string> = {
  autoCommit:
    'changes are always written at the end of the request; to write earlier (e.g. before streaming) call await ctx.session.save()',
  externalKey: "the id can travel in a header: transport: headerTransport('x-session-id')",
  ContextStore: 'pass a store: store: fromWholeObjectStore(yourStore) for a get/set/destroy store',
  encode: 'sessions are stored field by field as JSON, so there is no encoder to replace',
  decode: 'sessions are stored field by field as JSON, so there is no decoder to replace',
  valid: 'validate in your own middleware after await ctx.loadSession()',
  beforeSave: 'change the session in your own middleware before the response ends',
}

/** Explains where a koa-session option went, or `undefined` when `name` is not one of them. */
export function koaSessionOptionHint(name: string): string | undefined {
  if (COOKIE_FLAT_OPTIONS.includes(name)) return `cookie options now live under cookie: write cookie: { ${name} }`
  return MOVED[name]
}

function isKoaApp(value: unknown): value is Koa {
  return typeof value === 'object' && value !== null && typeof (value as Koa).use === 'function' && 'context' in value
}

/** Accepts `session(options)`, and koa-session's `session(options, app)` and `session(app, options)`. */
export function splitCallForm(first: unknown, second: unknown): { options: unknown; app: Koa | undefined } {
  if (isKoaApp(first)) return { options: second, app: first }
  if (isKoaApp(second)) return { options: first, app: second }
  if (second !== undefined) {
    throw new SessionOptionError('session(options) takes one options object (or koa-session\'s forms session(options, app) / session(app, options))')
  }
  return { options: first, app: undefined }
}

/** A session that koa-session 7 kept in its cookie (its default, without a store). */
export interface KoaSessionCookie {
  /** The user's data: koa-session's `_` bookkeeping and prototype keys left out. */
  data: Record<string, unknown>
  /** koa-session's `_maxAge`, `'session'` for its `_session` flag, `undefined` when it recorded neither. */
  maxAge: number | 'session' | undefined
  /** koa-session's `_expire` (epoch ms); `undefined` for a browser-session cookie, which has none. */
  expires: number | undefined
}

/**
 * Decodes the value of a koa-session 7 cookie the way koa-session does (its `lib/util.js`: the
 * session's JSON in base64). The signature is not checked here: verify the cookie before.
 *
 * Returns `undefined` for a value that is not base64 JSON of an object, and for a session whose
 * `_expire` is not after `now`. koa-session itself still accepts one whose `_expire` equals `now`,
 * but it would have no lifetime left to store.
 *
 * koa-session never saves a key starting with `_` (its `toJSON()` skips them), so every such key
 * in the cookie is its bookkeeping and none is data. Keys that cannot be data here are dropped
 * too, and the rest moves: `$` keys (here the session's own bookkeeping, as data they would be taken
 * for it) and names of the session's API (`id`, `save`, ...), which koa-session let apps use.
 */
export function decodeKoaSessionCookie(value: string, now: number): KoaSessionCookie | undefined {
  let decoded: unknown
  try {
    decoded = decodeValue(Buffer.from(value, 'base64').toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) return undefined
  const fields = decoded as Record<string, unknown>

  const expire = typeof fields._expire === 'number' ? fields._expire : undefined
  if (expire !== undefined && expire <= now) return undefined
  const maxAge = fields._session === true ? 'session' : isLifetime(fields._maxAge) ? fields._maxAge : undefined

  const data: Record<string, unknown> = Object.create(null)
  for (const [key, item] of Object.entries(fields)) {
    if (!key.startsWith('_') && isDataKey(key)) data[key] = item
  }
  return { data, maxAge, expires: expire }
}

const isLifetime = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value) && value > 0

/**
 * For `importKoaSessionCookie`: the session koa-session kept in the cookie `name`, verified with
 * `app.keys` and decoded. `found` says whether such a cookie came at all, so that a tampered,
 * expired or undecodable one can be cleared.
 */
export function readKoaSessionCookie(ctx: Context, name: string): { found: boolean; session: KoaSessionCookie | undefined } {
  if (ctx.cookies.get(name, { signed: false }) === undefined) return { found: false, session: undefined }
  const value = ctx.cookies.get(name, { signed: true })
  return { found: true, session: value === undefined ? undefined : decodeKoaSessionCookie(value, Date.now()) }
}
