/**
 * koa-atomic-session: session middleware for Koa whose sessions are written field by field and
 * atomically, and read from the store only when a request needs them.
 *
 * This entry never loads a database client: the Redis and MongoDB stores live at
 * `koa-atomic-session/redis` and `koa-atomic-session/mongodb`.
 */
import type { Session } from './view.js'

export { session, type SessionMiddleware } from './middleware.js'
export type { SessionOptions } from './options.js'
export type { RegenerateOptions, Session, SessionData, SessionMethods } from './view.js'
export type { Store, Patch, ConditionalPatch } from './store.js'
export { MemoryStore, type MemoryStoreOptions } from './stores/memory.js'
export { fromWholeObjectStore, type WholeObjectStore } from './stores/whole-object.js'
export { headerTransport, type SessionTransport, type TransportSetOptions, type CookieOptions } from './transport.js'
export type { SessionEvents, SessionEventPayload } from './events.js'
export type { UserSession } from './user-index.js'
export type { Duration } from './duration.js'
export {
  SessionError,
  SessionOptionError,
  SessionStoreError,
  SessionTooLargeError,
  SessionConflictError,
  SessionStateError,
  SessionValueError,
} from './errors.js'

declare module 'koa' {
  interface ExtendableContext {
    /**
     * The session. Usable synchronously unless `lazy: true` (then `await ctx.loadSession()`
     * first). Assign `null` to destroy it (it then reads `null` for the rest of the request), or
     * an object to replace its data.
     */
    get session(): Session
    set session(value: Record<string, unknown> | null)
    /** The session id, or `undefined` before one exists. */
    readonly sessionId: string | undefined
    /** Loads the session once per request (memoised) and returns it. */
    loadSession(): Promise<Session>
  }
}
