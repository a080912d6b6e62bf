import type { Context } from 'koa'
import { parseDuration, type Duration } from './duration.js'
import { SessionOptionError } from './errors.js'
import { emit } from './events.js'
import { koaSessionOptionHint } from './koa-session.js'
import type { Store } from './store.js'
import { MemoryStore } from './stores/memory.js'
import {
  COOKIE_DEFAULTS,
  COOKIE_OPTION_NAMES,
  cookieTransport,
  type CookieOptions,
  type SessionTransport,
} from './transport.js'

export interface SessionOptions {
  /** Where sessions live. Default: a new `MemoryStore()` (one process only). */
  store?: Store
  /** Cookie name carrying the session id. Default `'koa.sid'`. */
  key?: string
  /** Prepended to the id to form the store key. Default `'koa:sess:'`. */
  prefix?: string
  /** Random bytes in a generated id (at least 16, i.e. 128 bits). Default `16`. */
  idBytes?: number
  /**
   * Idle lifetime: milliseconds or a human string (`'30 days'`, `'2h'`). `'session'` makes a
   * browser-session cookie, kept in the store for one day. Default `'30 days'`.
   */
  maxAge?: Duration | 'session'
  /** Hard lifetime from creation, whatever the activity. Default: none. */
  absoluteMaxAge?: Duration
  /** Re-send the cookie and extend the expiry on every request that loaded the session. Default `false`. */
  rolling?: boolean
  /** Extend the expiry only when less than half of `maxAge` is left. Default `false`. */
  renew?: boolean
  /**
   * `false` (default): a request with a valid id is loaded before downstream middleware runs, so
   * `ctx.session` works synchronously. `true`: nothing is read until `await ctx.loadSession()`.
   */
  lazy?: boolean
  /** Give every visitor a stored (guest) session and cookie. Default `false`. */
  saveUninitialized?: boolean
  /** Cookie options, merged over `{ path: '/', httpOnly: true, sameSite: 'lax', signed: true, overwrite: true }`. */
  cookie?: CookieOptions
  /** Where the id travels. Default: the signed cookie named by `key`. See `headerTransport()`. */
  transport?: SessionTransport
  /** Makes new ids. Its output must be 22–128 base64url characters. Default: `idBytes` random bytes. */
  genid?: (ctx: Context) => string
  /** The largest encoded session in bytes; a write past it fails and stores nothing. Default 1 MiB. */
  maxBytes?: number
  /**
   * `'overwrite'` (default, as every peer): the last writer of a key wins. `'reject'`: the
   * end-of-request patch is written only if every key the request read and then changed still
   * holds what it read; otherwise nothing is written and the request answers 409
   * (`SessionConflictError` naming the key). Needs a store with a conditional write.
   */
  conflicts?: 'overwrite' | 'reject'
  /**
   * When the store fails while loading: `'fail'` (default) answers 503; `'anonymous'` goes on
   * with an empty, read-only session, and any write then answers 503.
   */
  onStoreError?: 'fail' | 'anonymous'
  /**
   * The name of koa-session's cookie (`'koa.sess'`) when it kept sessions in the cookie itself:
   * on a user's next visit that cookie is verified with `app.keys`, decoded as koa-session
   * encoded it, stored under a new id in one write, and replaced by this library's cookie.
   */
  importKoaSessionCookie?: string
}

/** The options after defaults and validation: built once, read on every request. */
export interface SessionConfig {
  store: Store
  prefix: string
  idBytes: number
  /** Milliseconds, or `'session'` for a browser-session cookie. */
  maxAge: number | 'session'
  absoluteMaxAge: number | undefined
  rolling: boolean
  renew: boolean
  lazy: boolean
  saveUninitialized: boolean
  transport: SessionTransport
  /** Cookie options when the id travels in the default cookie, else `undefined`. */
  cookie: CookieOptions | undefined
  genid: ((ctx: Context) => string) | undefined
  maxBytes: number
  conflicts: 'overwrite' | 'reject'
  onStoreError: 'fail' | 'anonymous'
  importKoaSessionCookie: string | undefined
}

const OPTION_NAMES: ReadonlySet<string> = new Set([
  'store', 'key', 'prefix', 'idBytes', 'maxAge', 'absoluteMaxAge', 'rolling', 'renew', 'lazy',
  'saveUninitialized', 'cookie', 'transport', 'genid', 'maxBytes', 'conflicts', 'onStoreError', 'importKoaSessionCookie',
])

// RFC 6265 cookie-name token characters.
const COOKIE_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

const fail = (message: string): never => {
  throw new SessionOptionError(message)
}

export function resolveOptions(input: unknown = {}): SessionConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    fail('session(options): options must be an object')
  }
  const options = input as Record<string, unknown>
  for (const name of Object.keys(options)) {
    if (OPTION_NAMES.has(name)) continue
    const hint = koaSessionOptionHint(name)
    fail(hint ? `option ${name} is not supported here: ${hint}` : `option ${name} is unknown`)
  }
  const opts = options as SessionOptions

  const store = opts.store ?? new MemoryStore()
  assertStore(store)

  if (opts.transport !== undefined) {
    if (typeof opts.transport?.get !== 'function' || typeof opts.transport.set !== 'function') {
      fail('option transport must be an object with get(ctx) and set(ctx, id, options) methods')
    }
    for (const cookieOnly of ['cookie', 'key'] as const) {
      if (opts[cookieOnly] !== undefined) {
        fail(`option ${cookieOnly} applies only to the cookie transport; remove it, or remove option transport`)
      }
    }
  }

  const key = opts.key ?? 'koa.sid'
  if (typeof key !== 'string' || !COOKIE_NAME.test(key)) fail(`option key must be a cookie name, got ${String(key)}`)

  const prefix = opts.prefix ?? 'koa:sess:'
  if (typeof prefix !== 'string') fail('option prefix must be a string')

  const idBytes = opts.idBytes ?? 16
  if (!Number.isInteger(idBytes) || idBytes < 16 || idBytes > 96) {
    fail(`option idBytes must be an integer from 16 (128 bits) to 96, got ${String(idBytes)}`)
  }

  const maxAge = opts.maxAge === 'session' ? 'session' : duration('maxAge', opts.maxAge ?? '30 days')
  const absoluteMaxAge = opts.absoluteMaxAge === undefined ? undefined : duration('absoluteMaxAge', opts.absoluteMaxAge)

  const cookie = opts.transport === undefined ? cookieOptions(opts.cookie) : undefined

  if (opts.genid !== undefined && typeof opts.genid !== 'function') fail('option genid must be a function (ctx) => string')

  const maxBytes = opts.maxBytes ?? 1024 * 1024
  if (!Number.isInteger(maxBytes) || maxBytes < 1) fail(`option maxBytes must be a positive integer, got ${String(maxBytes)}`)

  const conflicts = opts.conflicts ?? 'overwrite'
  if (conflicts !== 'overwrite' && conflicts !== 'reject') fail(`option conflicts must be 'overwrite' or 'reject', got ${String(conflicts)}`)
  if (conflicts === 'reject' && typeof store.applyIf !== 'function') {
    fail("option conflicts: 'reject' needs a store with a conditional write (applyIf); this store has none (fromWholeObjectStore cannot offer one)")
  }

  const onStoreError = opts.onStoreError ?? 'fail'
  if (onStoreError !== 'fail' && onStoreError !== 'anonymous') {
    fail(`option onStoreError must be 'fail' or 'anonymous', got ${String(onStoreError)}`)
  }

  const importCookie = opts.importKoaSessionCookie
  if (importCookie !== undefined && (typeof importCookie !== 'string' || !COOKIE_NAME.test(importCookie))) {
    fail(`option importKoaSessionCookie must be the name of koa-session's cookie (e.g. 'koa.sess'), got ${String(importCookie)}`)
  }

  return {
    store,
    prefix,
    idBytes,
    maxAge,
    absoluteMaxAge,
    rolling: flag('rolling', opts.rolling),
    renew: flag('renew', opts.renew),
    lazy: flag('lazy', opts.lazy),
    saveUninitialized: flag('saveUninitialized', opts.saveUninitialized),
    transport: opts.transport ?? cookieTransport(key, cookie as CookieOptions, (ctx) => emit(ctx, 'session:invalid', undefined)),
    cookie,
    genid: opts.genid,
    maxBytes,
    conflicts,
    onStoreError,
    importKoaSessionCookie: importCookie,
  }
}

function duration(name: string, value: unknown): number {
  return (
    parseDuration(value) ??
    fail(`option ${name} must be milliseconds or a duration such as '30 days', '1 month' or '2h', got ${String(value)}`)
  )
}

function flag(name: string, value: unknown): boolean {
  if (value === undefined) return false
  if (typeof value !== 'boolean') fail(`option ${name} must be true or false, got ${String(value)}`)
  return value as boolean
}

function cookieOptions(input: unknown): CookieOptions {
  if (input === undefined) return { ...COOKIE_DEFAULTS }
  if (typeof input !== 'object' || input === null) fail('option cookie must be an object of cookie options')
  for (const name of Object.keys(input as object)) {
    if (name === 'maxAge') fail('option cookie.maxAge is not used: set the session\'s maxAge option, which sets the cookie too')
    if (!COOKIE_OPTION_NAMES.has(name)) fail(`option cookie.${name} is unknown`)
  }
  const merged: CookieOptions = { ...COOKIE_DEFAULTS, ...(input as CookieOptions) }
  if (merged.expires !== undefined && !(merged.expires instanceof Date && !Number.isNaN(merged.expires.getTime()))) {
    fail('option cookie.expires must be a valid Date')
  }
  // Unset, secure follows the request (HTTPS, or app.proxy and X-Forwarded-Proto), as in koa-session.
  if (merged.sameSite === 'none' && merged.secure === false) {
    fail("option cookie.sameSite 'none' cannot go with cookie.secure: false: browsers drop SameSite=None cookies that are not Secure")
  }
  return merged
}

function assertStore(store: unknown): void {
  const methods = ['get', 'apply', 'increment', 'touch', 'destroy'] as const
  const candidate = store as Record<string, unknown> | null
  const missing = methods.filter((m) => typeof candidate?.[m] !== 'function')
  if (missing.length === 0) return
  if (typeof candidate?.get === 'function' && typeof candidate.set === 'function' && typeof candidate.destroy === 'function') {
    fail('option store looks like a koa-session store (get/set/destroy of whole objects): wrap it, store: fromWholeObjectStore(yourStore)')
  }
  fail(`option store must implement the Store contract; missing: ${missing.join(', ')}`)
}
