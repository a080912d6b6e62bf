/**
 * Every error this library throws on purpose is a `SessionError` (or, for values that are not
 * JSON, a `SessionValueError`, which is a `TypeError` as the SPEC promises). Each carries the HTTP
 * `status` Koa should answer with and `expose`, so Koa's default error handler does the right thing.
 */
export class SessionError extends Error {
  /** HTTP status Koa answers with when this error reaches it. */
  status: number
  /** Whether Koa may show the message to the client (never for server-side faults). */
  expose: boolean

  constructor(message: string, status = 500, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.status = status
    this.expose = status < 500
  }
}

/** An option passed to `session()` is unknown, misplaced or invalid. The message names it. */
export class SessionOptionError extends SessionError {
  constructor(message: string) {
    super(message, 500)
  }
}

/**
 * The store failed or timed out. Answered with 503; the message (for logs, not the client) says
 * which operation failed, and `cause` holds the store's own error.
 */
export class SessionStoreError extends SessionError {
  readonly operation: string

  constructor(operation: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause)
    super(
      `Session store failed during ${operation}: ${reason}. Nothing of this request's session changes ` +
        'is reported as saved; the client may retry once the store is reachable.',
      503,
      { cause: withoutDetails(cause) },
    )
    this.operation = operation
  }
}

/**
 * The store's error, reduced to its name, message and code: clients attach the command they ran
 * (ioredis: `command.args`, `previousErrors`), which holds the session id and data, and an error
 * is logged whole.
 */
function withoutDetails(cause: unknown): unknown {
  if (!(cause instanceof Error)) return cause
  const reduced = new Error(cause.message)
  reduced.name = cause.name
  const { code } = cause as { code?: unknown }
  if (code !== undefined) Object.assign(reduced, { code })
  return reduced
}

/** The encoded session would exceed `maxBytes`; nothing was written. */
export class SessionTooLargeError extends SessionError {
  constructor(bytes: number, maxBytes: number) {
    super(
      `Session would be ${bytes} bytes encoded, over the maxBytes limit of ${maxBytes}; nothing was ` +
        'written. Keep large data out of the session (store a reference to it) or raise maxBytes.',
      500,
    )
  }
}

/**
 * A compare-and-set found the key changed by another request (answered with 409). The message
 * names the key, never its value.
 */
export class SessionConflictError extends SessionError {
  readonly key: string

  constructor(key: string, message?: string) {
    super(message ?? `Session key "${key}" was changed by another request; nothing was written. Retry.`, 409)
    this.key = key
  }
}

/**
 * The session was used in a way its state does not allow: read before it was loaded (500), or
 * written through an id that a graced `regenerate()` retired (409).
 */
export class SessionStateError extends SessionError {
  constructor(message: string, status = 500) {
    super(message, status)
  }
}

/** A value cannot be stored as JSON, or a key is reserved. A `TypeError`, naming the key. */
export class SessionValueError extends TypeError {
  readonly key: string

  constructor(key: string, problem: string) {
    super(`Session key "${key}": ${problem}`)
    this.name = 'SessionValueError'
    this.key = key
  }
}
