import { randomBytes } from 'node:crypto'
import type { Context } from 'koa'
import { SessionOptionError } from './errors.js'

/**
 * Shape of every id, whatever carried it: base64url, 22 to 128 characters. It covers the ids made
 * here (16+ random bytes) and koa-session's UUIDs, so migrating users keep their sessions.
 */
export const ID_PATTERN = /^[A-Za-z0-9_-]{22,128}$/

/** A new id: `idBytes` random bytes, or the app's `genid`, whose output must pass the id check. */
export function newId(ctx: Context, idBytes: number, genid: ((ctx: Context) => string) | undefined): string {
  if (!genid) return randomBytes(idBytes).toString('base64url')
  const id = genid(ctx)
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
    throw new SessionOptionError(`option genid returned ${JSON.stringify(id)}; ids must be 22 to 128 base64url characters (A-Z a-z 0-9 - _)`)
  }
  return id
}
