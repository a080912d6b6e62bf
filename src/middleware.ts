import type Koa from 'koa'
import type { Context, Middleware, Next } from 'koa'
import { SessionStateError } from './errors.js'
import { splitCallForm } from './koa-session.js'
import { resolveOptions, type SessionConfig, type SessionOptions } from './options.js'
import { SessionState } from './session.js'
import { assertCookieKeys } from './transport.js'
import { assertUserId, destroyUserSessions, listUserSessions, type UserSession } from './user-index.js'
import { STATE, type Session } from './view.js'

/** The middleware returned by `session()`, with the per-user index's operations. */
export interface SessionMiddleware extends Middleware {
  /** The user's live sessions (bound with `ctx.session.login()`): ids and times, never data. */
  listByUser(userId: string): Promise<UserSession[]>
  /**
   * Destroys the user's sessions, except the ids in `except` ("log out everywhere but here"; an
   * `undefined` there, as `ctx.sessionId` may be, excepts nothing). Resolves the ids destroyed.
   */
  destroyByUser(userId: string, options?: { except?: string | readonly string[] | undefined }): Promise<string[]>
}

// Per request: the config of the session middleware that is running, and its state once made.
const CONFIG = Symbol('koa-atomic-session#config')
type SessionContext = Context & { [CONFIG]?: SessionConfig; [STATE]?: SessionState }

/**
 * Session middleware. Data changes are tracked and written at the end of the request as one
 * field-level patch; the store is read only when the request carries a valid id (or, with
 * `lazy: true`, only when `await ctx.loadSession()` asks).
 *
 * Also accepts koa-session's call forms `session(options, app)` and `session(app, options)`.
 */
export function session(options?: SessionOptions): SessionMiddleware
export function session(options: SessionOptions, app: Koa): SessionMiddleware
export function session(app: Koa, options?: SessionOptions): SessionMiddleware
export function session(first?: unknown, second?: unknown): SessionMiddleware {
  const { options, app } = splitCallForm(first, second)
  const config = resolveOptions(options)
  if (app) install(app)
  const checked = new WeakSet<Koa>()

  const middleware = async function sessionMiddleware(context: Context, next: Next): Promise<void> {
    const ctx = context as SessionContext
    if (!checked.has(ctx.app)) {
      if (config.cookie || config.importKoaSessionCookie) assertCookieKeys(ctx, config.cookie ?? {})
      install(ctx.app)
      checked.add(ctx.app)
    }
    ctx[CONFIG] = config
    // Eager: a request with a valid id is loaded now, so ctx.session works synchronously.
    if (!config.lazy) {
      const loading = stateOf(ctx).loadEagerly()
      if (loading) await loading
    }
    try {
      await next()
    } catch (error) {
      // A deliberate client error (ctx.throw(401)) is an answer like any other: its changes are
      // kept, as in koa-session. Anything else discards them: a failed request leaves the session
      // as it found it.
      if (isClientError(error)) await commitBeside(ctx, error)
      throw error
    }
    const state = ctx[STATE] ?? (config.saveUninitialized ? stateOf(ctx) : undefined)
    const committing = state?.commit()
    if (committing) await committing
  }
  return Object.assign(middleware, {
    listByUser(userId: string) {
      assertUserId(userId)
      return listUserSessions(config.store, config.prefix, userId)
    },
    destroyByUser(userId: string, options: { except?: string | readonly string[] | undefined } = {}) {
      assertUserId(userId)
      const except = typeof options.except === 'string' ? [options.except] : (options.except ?? [])
      return destroyUserSessions(config.store, config.prefix, userId, except)
    },
  })
}

function stateOf(ctx: SessionContext): SessionState {
  const state = ctx[STATE]
  if (state) return state
  const config = ctx[CONFIG]
  if (!config) {
    throw new SessionStateError('ctx.session was used outside the session middleware: app.use(session()) must come before this middleware')
  }
  return (ctx[STATE] = new SessionState(ctx, config))
}

const installed = new WeakSet<object>()

/** Defines `ctx.session`, `ctx.sessionId` and `ctx.loadSession()` once per app, on `app.context`. */
function install(app: Koa): void {
  if (installed.has(app.context)) return
  installed.add(app.context)
  Object.defineProperties(app.context, {
    session: {
      configurable: true,
      get(this: SessionContext): Session | null {
        return stateOf(this).view()
      },
      set(this: SessionContext, value: unknown) {
        stateOf(this).replace(value)
      },
    },
    sessionId: {
      configurable: true,
      get(this: SessionContext): string | undefined {
        const state = stateOf(this)
        state.incomingId()
        return state.destroyed ? undefined : state.id
      },
    },
    loadSession: {
      configurable: true,
      writable: true,
      value(this: SessionContext): Promise<Session | null> {
        return stateOf(this).loadView()
      },
    },
  })
}

function isClientError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const { status, statusCode } = error as { status?: unknown; statusCode?: unknown }
  const code = typeof status === 'number' ? status : statusCode
  return typeof code === 'number' && code >= 400 && code < 500
}

/**
 * Commits after a client error. Koa's error handler drops every header the response had, so the
 * headers the commit sets (the id cookie of a new session) ride on `error.headers`, which Koa keeps.
 */
async function commitBeside(ctx: SessionContext, error: unknown): Promise<void> {
  const state = ctx[STATE]
  if (!state) return
  const before = { ...ctx.response.headers }
  await state.commit()
  const after = ctx.response.headers
  const carried: Record<string, unknown> = {}
  for (const name of Object.keys(after)) if (after[name] !== before[name]) carried[name] = after[name]
  if (Object.keys(carried).length === 0) return
  const holder = error as { headers?: Record<string, unknown> }
  holder.headers = { ...holder.headers, ...carried }
}
