/**
 * Everything that exists only for users coming from koa-session, in one place: its call forms,
 * and the options it had that now live elsewhere or no longer apply.
 */
import type Koa from 'koa'
import { SessionOptionError } from './errors.js'

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
