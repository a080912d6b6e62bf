import type { Context } from 'koa'

/**
 * Events emitted on the Koa app. Payloads carry the context and the session id, never session
 * data, so listeners can log them safely.
 */
export interface SessionEvents {
  /** A new session was first written to the store. */
  'session:created': SessionEventPayload
  /** Changes (or a refreshed expiry) were written to the store. */
  'session:saved': SessionEventPayload
  /** A session was removed: `ctx.session = null`, `destroy()`, or the old id of `regenerate()`. */
  'session:destroyed': SessionEventPayload
  /** A request carried the id of a session that no longer exists or passed its `absoluteMaxAge`. */
  'session:expired': SessionEventPayload
  /** A request carried a malformed, unsigned or tampered id; it was ignored without a store lookup. */
  'session:invalid': { ctx: Context; id: undefined }
  /** The store failed; the error is also thrown (503 by default). */
  'session:error': SessionEventPayload & { error: Error }
}

export interface SessionEventPayload {
  ctx: Context
  id: string
}

/** Emits on `ctx.app` only when someone listens, so an unobserved event costs one lookup and no payload. */
export function emit<E extends keyof SessionEvents>(ctx: Context, event: E, id: SessionEvents[E]['id'], error?: Error): void {
  if (ctx.app.listenerCount(event) === 0) return
  ctx.app.emit(event, error === undefined ? { ctx, id } : { ctx, id, error })
}
