import type { Context } from 'koa'
import { SessionOptionError } from './errors.js'

/**
 * Reading and writing the id's cookies without `ctx.cookies`: on every request that has a session,
 * `ctx.cookies` would build a Cookies object, look up a cached pattern per name, and on a write
 * build a Cookie object per cookie and a date string. The headers here are byte for byte what
 * pillarjs/cookies (Koa's `ctx.cookies`) writes, with the attributes validated and joined once.
 */

/** Every option of Koa's `ctx.cookies.set`, less `maxAge` (the session's `maxAge` sets it). */
export interface CookieOptions {
  path?: string
  domain?: string
  secure?: boolean
  httpOnly?: boolean
  sameSite?: 'strict' | 'lax' | 'none' | boolean
  signed?: boolean
  overwrite?: boolean
  /** A fixed expiry date; when set, the cookie carries it instead of the session's maxAge. */
  expires?: Date
  partitioned?: boolean
  priority?: 'low' | 'medium' | 'high'
}

/** The value of cookie `name` in a request, read as `ctx.cookies.get(name, { signed: false })` reads it. */
export function cookieReader(name: string): (ctx: Context) => string | undefined {
  const pattern = new RegExp(`(?:^|;) *${name.replace(/[\^$\\.*+?()[\]{}|]/g, '\\$&')}=([^;]*)`)
  return (ctx) => {
    const header = ctx.req.headers.cookie
    if (!header) return undefined
    const value = pattern.exec(header)?.[1]
    return value !== undefined && value[0] === '"' ? value.slice(1, -1) : value
  }
}

/**
 * Sets cookies on a response; each pair is a name and its value, sent with the same attributes.
 * `maxAge`: milliseconds to live; `undefined`: until the browser closes; `null`: expired (cleared).
 */
export type CookieWriter = (ctx: Context, pairs: readonly (readonly [string, string])[], maxAge: number | null | undefined) => void

// pillarjs/cookies' checks of attribute values, made here once, when the options are read.
const PATH = /^[ -:=-~]*$/
const DOMAIN = /^([.]?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)([.][a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i
const PRIORITY = /^(?:low|medium|high)$/i
const SAME_SITE = /^(?:lax|none|strict)$/i
const EXPIRED = `; expires=${new Date(0).toUTCString()}`

/**
 * A writer of cookies with these attributes. `maxAge` sets the expiry unless the options fix one.
 * As with `ctx.cookies.set`, `secure` defaults to whether the request is secure, and `overwrite`
 * replaces earlier Set-Cookie headers of the same name.
 */
export function cookieWriter(options: CookieOptions): CookieWriter {
  const { domain, priority, sameSite, expires } = options
  // pillarjs/cookies' defaults for options not given at all (given as undefined, they are off).
  const path = 'path' in options ? options.path : '/'
  const httpOnly = 'httpOnly' in options ? options.httpOnly : true
  if (path && !PATH.test(path)) throw new SessionOptionError(`option cookie.path is invalid: ${JSON.stringify(path)}`)
  if (domain && !DOMAIN.test(domain)) throw new SessionOptionError(`option cookie.domain is invalid: ${JSON.stringify(domain)}`)
  if (priority && !PRIORITY.test(priority)) throw new SessionOptionError(`option cookie.priority must be 'low', 'medium' or 'high', got ${String(priority)}`)
  if (sameSite && sameSite !== true && !SAME_SITE.test(sameSite)) {
    throw new SessionOptionError(`option cookie.sameSite must be 'strict', 'lax', 'none' or a boolean, got ${String(sameSite)}`)
  }
  // The attribute order is pillarjs/cookies': path, expires, domain, priority, samesite, secure, httponly, partitioned.
  const beforeExpires = path ? `; path=${path}` : ''
  const middle =
    (domain ? `; domain=${domain}` : '') +
    (priority ? `; priority=${priority.toLowerCase()}` : '') +
    (sameSite ? `; samesite=${sameSite === true ? 'strict' : sameSite.toLowerCase()}` : '')
  const after = (httpOnly ? '; httponly' : '') + (options.partitioned ? '; partitioned' : '')
  const plainTail = middle + after
  const secureTail = `${middle}; secure${after}`
  const fixedExpires = expires ? `; expires=${expires.toUTCString()}` : undefined
  const overwrite = options.overwrite === true

  // Dates have whole seconds in a cookie: many writes in the same second share one string.
  let dateSecond = NaN
  let dateText = ''
  const expiresAttribute = (maxAge: number | null | undefined): string => {
    if (maxAge === null) return EXPIRED
    if (fixedExpires !== undefined) return fixedExpires
    // As pillarjs/cookies: no (or zero) maxAge, no expires attribute.
    if (!maxAge) return ''
    const at = Date.now() + maxAge
    const second = Math.floor(at / 1000)
    if (second !== dateSecond) {
      dateSecond = second
      dateText = `; expires=${new Date(at).toUTCString()}`
    }
    return dateText
  }

  return (ctx, pairs, maxAge) => {
    const secure = options.secure ?? ctx.request.secure
    const attributes = beforeExpires + expiresAttribute(maxAge) + (secure ? secureTail : plainTail)
    const res = ctx.res
    const previous = res.getHeader('Set-Cookie')
    const headers: string[] = previous === undefined ? [] : typeof previous === 'string' ? [previous] : [...(previous as string[])]
    for (const [name, value] of pairs) {
      if (overwrite) {
        const prefix = `${name}=`
        for (let i = headers.length - 1; i >= 0; i--) if ((headers[i] as string).startsWith(prefix)) headers.splice(i, 1)
      }
      headers.push(`${name}=${value}${attributes}`)
    }
    res.setHeader('Set-Cookie', headers)
  }
}
