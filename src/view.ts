import { inspect } from 'node:util'
import type { Duration } from './duration.js'

/**
 * The shape of session data. Declare yours by augmenting this interface, and `ctx.session.user`
 * is typed everywhere:
 *
 * ```ts
 * declare module 'koa-atomic-session' {
 *   interface SessionData { user?: { id: string }; views?: number }
 * }
 * ```
 * Until it is augmented, any key is allowed, as in koa-session.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface, @typescript-eslint/no-empty-object-type
export interface SessionData {}

/** `SessionData` when declared, else an open record (so untyped apps work as with koa-session). */
// `any` on purpose: an app that declares no types reads session values as koa-session's did.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Data = [keyof SessionData] extends [never] ? Record<string, any> : SessionData

type DataKey = keyof Data & string

/** Options of `regenerate()` and `login()`. */
export interface RegenerateOptions {
  /** Carry the data over to the new id (default `true`); `false` starts empty. */
  keep?: boolean
  /** Keep the old id readable, with its old data only, this many milliseconds. */
  graceMs?: number
}

/** The session's own methods and facts; these names cannot be used as data keys. */
export interface SessionMethods {
  /** Writes one key now, atomically, without loading the session first. */
  set<K extends DataKey>(key: K, value: Data[K]): Promise<void>
  /** Removes one key now, atomically, without loading the session first. */
  unset(key: DataKey): Promise<void>
  /** Adds `by` (default 1) to a numeric key in the store, atomically; resolves the new value. */
  increment(key: DataKey, by?: number): Promise<number>
  /**
   * Atomic read-modify-write of one key (compare-and-set in the store), loaded or not: `fn` gets the
   * stored value (`undefined` when absent) and returns the next (`undefined` removes the key). On a
   * conflict it reads again and retries (`retries`, default 8), then throws `SessionConflictError`.
   * Resolves the value written.
   */
  update<K extends DataKey>(key: K, fn: (current: Data[K] | undefined) => Data[K] | undefined, options?: { retries?: number }): Promise<Data[K] | undefined>
  /** Writes pending changes now (e.g. before streaming); stores a new session even when empty. */
  save(): Promise<void>
  /** Re-reads the session from the store, dropping unsaved changes. */
  reload(): Promise<void>
  /** Extends the expiry at the end of the request without changing data. */
  touch(): void
  /** Deletes the session from the store and clears the id; `ctx.session` then reads `null`. */
  destroy(): Promise<void>
  /**
   * A new id for this session (fixation defence); the old id is destroyed, or with `graceMs` stays
   * readable (with its old data only) that long for requests in flight. `keep: false` starts empty.
   */
  regenerate(options?: RegenerateOptions): Promise<void>
  /**
   * Regenerates the id and binds the session to `userId`, so `listByUser()` and `destroyByUser()`
   * on the middleware find it. Options as for `regenerate()`.
   */
  login(userId: string, options?: RegenerateOptions): Promise<void>
  /** Destroys the session and removes it from its user's index. */
  logout(): Promise<void>
  /** This session's idle lifetime in ms (or `'session'`); stored with the session until changed. */
  get maxAge(): number | 'session'
  /** Sets this session's idle lifetime: milliseconds, a duration such as `'2h'`, or `'session'`. */
  set maxAge(value: Duration | 'session')
  /** The id, or `undefined` while a new session has not been stored. */
  readonly id: string | undefined
  /** Whether this session began in this request. */
  readonly isNew: boolean
  /** When the store expires the session, as of its last write in or before this request. */
  readonly expiresAt: Date | undefined
  /** The data as a plain object, without methods. */
  toJSON(): Data
}

/** `ctx.session`: data keys as plain properties, plus the session's methods. */
export type Session = Data & SessionMethods

/** The key under which the view's target holds its state; user code never sees it. */
export const STATE = Symbol('koa-atomic-session#state')

/**
 * What the view needs of one request's session state (session.ts implements it). Declared here so
 * that the view depends on nothing above it.
 */
export interface ViewState {
  readonly id: string | undefined
  readonly isNew: boolean
  readonly expiresAt: Date | undefined
  readonly maxAge: number | 'session'
  readonly loaded: boolean
  read(key: string): unknown
  has(key: string): boolean
  keys(): string[]
  assign(key: string, value: unknown): void
  remove(key: string): void
  toJSON(): Record<string, unknown>
  setNow(key: string, value: unknown): Promise<void>
  unsetNow(key: string): Promise<void>
  increment(key: string, by?: number): Promise<number>
  update(key: string, fn: (current: unknown) => unknown, options?: { retries?: number }): Promise<unknown>
  save(): Promise<void>
  reload(): Promise<void>
  touch(): void
  destroy(): Promise<void>
  regenerate(options?: RegenerateOptions): Promise<void>
  login(userId: string, options?: RegenerateOptions): Promise<void>
  logout(): Promise<void>
}

type Target = { [STATE]: ViewState }
const stateOf = (view: unknown): ViewState => (view as Target)[STATE]

/** koa-session's methods also took a callback; passed here it would never be called, and the request would hang. */
function refuseCallback(method: string, argument: unknown): void {
  if (typeof argument === 'function') {
    throw new TypeError(`ctx.session.${method}() takes no callback (koa-session's callback form): it returns a promise, so write await ctx.session.${method}()`)
  }
}

// Shared by every session: methods find their request's state through `this`.
const METHODS: Record<string, (this: unknown, ...args: never[]) => unknown> = {
  set(key: string, value: unknown) {
    return stateOf(this).setNow(key, value)
  },
  unset(key: string) {
    return stateOf(this).unsetNow(key)
  },
  increment(key: string, by?: number) {
    return stateOf(this).increment(key, by)
  },
  update(key: string, fn: (current: unknown) => unknown, options?: { retries?: number }) {
    return stateOf(this).update(key, fn, options)
  },
  save(callback?: unknown) {
    refuseCallback('save', callback)
    return stateOf(this).save()
  },
  reload() {
    return stateOf(this).reload()
  },
  touch() {
    stateOf(this).touch()
  },
  destroy() {
    return stateOf(this).destroy()
  },
  regenerate(options?: RegenerateOptions) {
    refuseCallback('regenerate', options)
    return stateOf(this).regenerate(options)
  },
  login(userId: string, options?: RegenerateOptions) {
    return stateOf(this).login(userId, options)
  },
  logout() {
    return stateOf(this).logout()
  },
  toJSON() {
    return stateOf(this).toJSON()
  },
}

/**
 * What console.log(ctx.session) shows: the data, as koa-session shows it, and never the id (logs
 * must not hold what a client needs to take over a session). Node inspects a Proxy's target, so
 * the target carries it; `get` hands it out too, for code that calls it as koa-session allowed.
 */
function inspectSession(this: Target, depth: number, options: object): string {
  const state = this[STATE]
  return state.loaded ? inspect(state.toJSON(), { ...options, depth }) : 'Session (not loaded)'
}
const TARGET_PROTOTYPE = { [inspect.custom]: inspectSession }

const HANDLER: ProxyHandler<Target> = {
  get(target, key) {
    const state = target[STATE]
    if (typeof key === 'symbol') return key === STATE ? state : key === inspect.custom ? inspectSession : undefined
    switch (key) {
      case 'id':
        return state.id
      case 'isNew':
        return state.isNew
      case 'expiresAt':
        return state.expiresAt
      case 'maxAge':
        return state.maxAge
      case 'then':
        return undefined
    }
    return Object.hasOwn(METHODS, key) ? METHODS[key] : state.read(key)
  },
  set(target, key, value: unknown) {
    if (typeof key === 'symbol') return false
    target[STATE].assign(key, value)
    return true
  },
  deleteProperty(target, key) {
    if (typeof key === 'symbol') return false
    target[STATE].remove(key)
    return true
  },
  defineProperty(target, key, descriptor) {
    if (typeof key === 'symbol' || !('value' in descriptor)) return false
    target[STATE].assign(key, descriptor.value)
    return true
  },
  has(target, key) {
    if (typeof key === 'symbol') return false
    return target[STATE].has(key)
  },
  ownKeys(target) {
    return target[STATE].keys()
  },
  getOwnPropertyDescriptor(target, key) {
    if (typeof key === 'symbol') return undefined
    const state = target[STATE]
    if (!state.has(key)) return undefined
    return { value: state.read(key), writable: true, enumerable: true, configurable: true }
  },
}

/** The object users hold as `ctx.session`, for one request. */
export function createView(state: ViewState): Session {
  const target: Target = Object.create(TARGET_PROTOTYPE)
  target[STATE] = state
  return new Proxy(target, HANDLER) as unknown as Session
}
