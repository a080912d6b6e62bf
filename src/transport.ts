import type { Context } from 'koa'
import type Keygrip from 'keygrip'
import { cookieReader, cookieWriter, type CookieOptions } from './cookies.js'
import { SessionOptionError } from './errors.js'

export type { CookieOptions }

/**
 * Where the session id travels between client and server. The default is a signed cookie; a
 * header (`headerTransport()`) serves clients that cannot keep cookies. Whatever `get` returns is
 * checked for shape before any store lookup, so a transport need not validate it.
 */
export interface SessionTransport {
  /** The id the request carries, or `undefined`. */
  get(ctx: Context): string | undefined
  /** Sends a new or refreshed id, or clears it (`null`). */
  set(ctx: Context, id: string | null, options: TransportSetOptions): void
}

export interface TransportSetOptions {
  /** Milliseconds the id stays valid on the client; `undefined`: until the browser closes. */
  maxAge: number | undefined
}

export const COOKIE_DEFAULTS: Readonly<CookieOptions> = Object.freeze({
  path: '/',
  httpOnly: true,
  sameSite: 'lax',
  signed: true,
  overwrite: true,
})

export const COOKIE_OPTION_NAMES: ReadonlySet<string> = new Set([
  'path', 'domain', 'secure', 'httpOnly', 'sameSite', 'signed', 'overwrite', 'expires', 'partitioned', 'priority',
])

/** Set on the context when the id cookie verified against an older key: it must be re-signed. */
export const STALE_SIGNATURE = Symbol('koa-atomic-session#staleSignature')

/** Called when a request carried an id that failed verification. */
export type OnInvalid = (ctx: Context) => void

const SIGNATURE_CACHE_SIZE = 10_000

/**
 * The id in a cookie named `key`, signed with `app.keys` unless `signed: false`.
 *
 * Keygrip signs and verifies, and either costs more than a whole bare Koa request, while a browser
 * sends the same cookie hundreds of times and each write re-sends it. So the signature of each id
 * under the newest key is remembered once keygrip has made or accepted it, for as long as
 * `app.keys` is the same key set: a cookie whose signature is the remembered one needs no HMAC,
 * and re-sending an id reuses its signature. Only what keygrip produced or accepted is remembered,
 * so a forged or altered pair always meets keygrip.
 */
export function cookieTransport(key: string, options: CookieOptions, onInvalid: OnInvalid): SessionTransport {
  const sigName = `${key}.sig`
  const signed = options.signed !== false
  const readId = cookieReader(key)
  const readSignature = cookieReader(sigName)
  const write = cookieWriter(options)
  const signatures = new Map<string, string>()
  let signaturesFor: unknown
  let signaturesForFirstKey: unknown

  /** The remembered signatures, emptied when `app.keys` is another key set. */
  function known(keys: unknown): Map<string, string> {
    const first = Array.isArray(keys) ? keys[0] : undefined
    if (keys !== signaturesFor || first !== signaturesForFirstKey) {
      signatures.clear()
      signaturesFor = keys
      signaturesForFirstKey = first
    }
    return signatures
  }

  function remember(id: string, signature: string): void {
    if (signatures.size >= SIGNATURE_CACHE_SIZE) signatures.clear()
    signatures.set(id, signature)
  }

  /** The signature of `id` under the newest key: remembered, or made by keygrip. */
  function signatureOf(ctx: Context, id: string): string {
    let signature = known(ctx.app.keys).get(id)
    if (signature === undefined) {
      const keygrip = (ctx.cookies as unknown as { keys?: Keygrip }).keys
      if (!keygrip) throw new SessionOptionError('option cookie.signed is true but app.keys is not set')
      signature = keygrip.sign(`${key}=${id}`)
      remember(id, signature)
    }
    return signature
  }

  return {
    get(ctx) {
      const value = readId(ctx)
      if (!value || !signed) return value || undefined
      const signature = readSignature(ctx)
      if (!signature) {
        onInvalid(ctx)
        return undefined
      }
      if (known(ctx.app.keys).get(value) === signature) return value
      const keygrip = (ctx.cookies as unknown as { keys?: Keygrip }).keys
      const index = keygrip ? keygrip.index(`${key}=${value}`, signature) : -1
      if (index < 0) {
        onInvalid(ctx)
        return undefined
      }
      if (index > 0) (ctx as unknown as Record<symbol, boolean>)[STALE_SIGNATURE] = true
      else remember(value, signature)
      return value
    },

    set(ctx, id, { maxAge }) {
      if (options.secure && !ctx.request.secure) {
        throw new SessionOptionError(
          'option cookie.secure is true but this request came over plain HTTP, so the cookie cannot be sent: serve over ' +
            'HTTPS, or set app.proxy = true when a proxy you trust terminates TLS (and sends X-Forwarded-Proto).',
        )
      }
      const value = id ?? ''
      const lifetime = id === null ? null : maxAge
      if (!signed) return write(ctx, [[key, value]], lifetime)
      write(ctx, [[key, value], [sigName, signatureOf(ctx, value)]], lifetime)
    },
  }
}

/**
 * The id in a request header (default `x-session-id`); new, rotated and cleared ids (an empty
 * value) go back in the response header of the same name. Every response that used the session
 * carries `Vary` naming the header. No cookie is set and `app.keys` is not needed: the id itself
 * is the secret, so send it only over TLS.
 */
export function headerTransport(name = 'x-session-id'): SessionTransport {
  if (typeof name !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
    throw new SessionOptionError(`headerTransport(name): "${String(name)}" is not a valid header name`)
  }
  const header = name.toLowerCase()
  return {
    get(ctx) {
      // A response that used the session depends on this header: caches must key on it.
      ctx.vary(name)
      const value = ctx.request.headers[header]
      return typeof value === 'string' && value !== '' ? value : undefined
    },
    set(ctx, id) {
      ctx.set(name, id ?? '')
      ctx.vary(name)
    },
  }
}

/** What the cookie transport needs before its first request: keys to sign with. */
export function assertCookieKeys(ctx: Context, options: CookieOptions): void {
  if (options.signed === false) return
  const keys: unknown = ctx.app.keys
  if (!keys || (Array.isArray(keys) && keys.length === 0)) {
    throw new SessionOptionError(
      'option cookie.signed is true (the default) but app.keys is not set: set app.keys = [\'a long random secret\'] ' +
        'before the first request, or pass cookie: { signed: false } (not recommended).',
    )
  }
}
