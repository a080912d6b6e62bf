/**
 * Lifetimes: how long the store keeps a session after a write, and when an idle session is due
 * for a refresh. Pure functions of the session's bookkeeping, the options and the time.
 */
import { decodeField, emptyRecord } from './values.js'

/** Bookkeeping keys stored beside the user's keys (see values.ts: keys starting with `$`). */
export const CREATED = '$c'
export const EXPIRES = '$e'
export const MAX_AGE = '$m'
/** The user a session is bound to by `login()`, and how long that user's index is known to live. */
export const USER = '$u'
export const INDEX_UNTIL = '$x'
/** When a bound session was last written (reported by `listByUser()`). */
export const LAST_WRITE = '$w'
/** Set on the old id by `regenerate({ graceMs })`: readable for the grace period, never written. */
export const RETIRED = '$r'

export type Meta = {
  [CREATED]?: number
  [EXPIRES]?: number
  [MAX_AGE]?: number | 'session'
  [USER]?: string
  [INDEX_UNTIL]?: number
  [LAST_WRITE]?: number
  [RETIRED]?: number
}

const META_KEYS = [CREATED, EXPIRES, MAX_AGE, USER, INDEX_UNTIL, LAST_WRITE, RETIRED] as const

/** The bookkeeping of a session whose fields are still JSON text (as `getEncoded` returns them). */
export function decodeMeta(fields: Readonly<Record<string, string>> | undefined): Meta {
  const meta: Record<string, unknown> = emptyRecord()
  if (fields) {
    for (const key of META_KEYS) {
      if (Object.hasOwn(fields, key)) meta[key] = decodeField(key, fields[key] as string)
    }
  }
  return meta as Meta
}

/** One day: how long the store keeps a session whose cookie lasts until the browser closes. */
export const BROWSER_SESSION_TTL = 24 * 60 * 60 * 1000

/** The idle lifetime in the store for a `maxAge`. */
export function idleTtl(maxAge: number | 'session'): number {
  return maxAge === 'session' ? BROWSER_SESSION_TTL : maxAge
}

/**
 * How long the store keeps the session after a write at `now`: the idle lifetime, capped by what
 * is left of the absolute one (counted from creation, or from now for a session not yet created).
 */
export function ttlAt(now: number, maxAge: number | 'session', absoluteMaxAge: number | undefined, created: number | undefined): number {
  const idle = idleTtl(maxAge)
  if (absoluteMaxAge === undefined) return idle
  return Math.max(1, Math.min(idle, (created ?? now) + absoluteMaxAge - now))
}

/** Whether a session created at `created` has outlived `absoluteMaxAge`. */
export function pastAbsolute(now: number, absoluteMaxAge: number | undefined, created: unknown): boolean {
  return absoluteMaxAge !== undefined && typeof created === 'number' && created + absoluteMaxAge <= now
}

/** `renew`: extend only when less than half of the idle lifetime is left (or the expiry is unknown). */
export function renewDue(now: number, maxAge: number | 'session', expires: number | undefined): boolean {
  return expires === undefined || expires - now < idleTtl(maxAge) / 2
}
