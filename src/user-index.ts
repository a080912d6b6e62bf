/**
 * The per-user index, on top of the Store contract: one record per user at `prefix + 'user:' +
 * userId`, one field per session id (its creation time), and `$e`, the index's own expiry.
 *
 * Invariant: a live session of a user is never missing from that user's index. So an entry is
 * written before its session is (a session id that never got stored leaves an entry that is pruned
 * when read), the index only ever lives longer (its expiry moves forward by compare-and-set, never
 * back), and a bound session extends the index before its own expiry passes the index's. Entries
 * are pruned when the index is read and their session is gone.
 */
import { backOff } from './conflicts.js'
import { SessionConflictError, SessionStoreError } from './errors.js'
import { CREATED, EXPIRES, LAST_WRITE } from './lifetime.js'
import type { Store } from './store.js'

/** One of a user's sessions, as `listByUser()` reports it: facts, never data. */
export interface UserSession {
  id: string
  createdAt: Date | undefined
  /** The session's last write (a request that changed it or refreshed its expiry). */
  lastSeenAt: Date | undefined
  expiresAt: Date | undefined
}

const INDEX_EXPIRES = '$e'
const ATTEMPTS = 9
// An entry younger than this may belong to a login still writing its session: never prune it.
const PRUNE_AFTER_MS = 60_000

export function indexKey(prefix: string, userId: string): string {
  return `${prefix}user:${encodeURIComponent(userId)}`
}

/** Checks a user id given to `login()`, `listByUser()` or `destroyByUser()`. */
export function assertUserId(userId: unknown): asserts userId is string {
  if (typeof userId !== 'string' || userId === '' || userId.length > 512) {
    throw new TypeError(`user ids must be non-empty strings of at most 512 characters, got ${typeof userId}`)
  }
}

/**
 * One compare-and-set on the index: `change` gets the index's current expiry and returns the new
 * expiry and fields to write (or `undefined`: nothing to do). Retries when a concurrent writer won.
 */
async function casIndex(
  store: Store,
  key: string,
  change: (expires: number | undefined) => { expires: number; set?: Record<string, unknown>; unset?: string[] } | undefined,
): Promise<number | undefined> {
  const applyIf = store.applyIf?.bind(store)
  if (!applyIf) throw new TypeError('the per-user index needs a store with a conditional write (applyIf)')
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    await backOff(attempt)
    const index = await store.get(key)
    const current = typeof index?.[INDEX_EXPIRES] === 'number' ? (index[INDEX_EXPIRES] as number) : undefined
    const next = change(current)
    if (!next) return current
    const ttlMs = Math.max(1, next.expires - Date.now())
    const set = { ...next.set, [INDEX_EXPIRES]: next.expires }
    const patch = next.unset?.length ? { set, unset: next.unset, ttlMs } : { set, ttlMs }
    if (await applyIf(key, { ...patch, expect: { [INDEX_EXPIRES]: current } })) return next.expires
  }
  throw new SessionConflictError('(user index)', `the per-user index ${key} kept changing under concurrent writers; nothing was written`)
}

/** Adds `sessionId` to the index, which then lives at least `until`. Resolves the index's expiry. */
export async function bindSession(store: Store, key: string, sessionId: string, until: number): Promise<number> {
  const now = Date.now()
  const expires = await casIndex(store, key, (current) => ({ expires: Math.max(current ?? 0, until), set: { [sessionId]: now } }))
  return expires as number
}

/** Makes the index live at least `until`, never shortening it. Resolves the index's expiry. */
export async function extendIndex(store: Store, key: string, until: number): Promise<number> {
  const expires = await casIndex(store, key, (current) =>
    current !== undefined && current >= until ? undefined : { expires: Math.max(current ?? 0, until) },
  )
  return expires ?? until
}

/** Removes session ids from the index, keeping its expiry. */
export async function unbindSessions(store: Store, key: string, sessionIds: string[]): Promise<void> {
  if (sessionIds.length === 0) return
  await casIndex(store, key, (current) => (current === undefined ? undefined : { expires: current, unset: sessionIds }))
}

/**
 * The user's live sessions. Reads the index and each session it names (one read per session, no
 * scan), and prunes entries whose session is gone.
 */
export async function listUserSessions(store: Store, prefix: string, userId: string): Promise<UserSession[]> {
  const key = indexKey(prefix, userId)
  const index = await guard('get', () => store.get(key))
  if (!index) return []
  const now = Date.now()
  const ids = Object.keys(index).filter((id) => !id.startsWith('$'))
  const records = await Promise.all(ids.map((id) => guard('get', () => store.get(prefix + id))))
  const live: UserSession[] = []
  const gone: string[] = []
  ids.forEach((id, i) => {
    const record = records[i]
    // A session re-bound to another user since is no longer this user's.
    if (record && record.$u === userId) live.push(describe(id, record))
    else if (!record && now - Number(index[id]) < PRUNE_AFTER_MS) return
    else gone.push(id)
  })
  await guard('apply', () => unbindSessions(store, key, gone))
  return live
}

function describe(id: string, record: Record<string, unknown>): UserSession {
  const date = (value: unknown) => (typeof value === 'number' ? new Date(value) : undefined)
  return { id, createdAt: date(record[CREATED]), lastSeenAt: date(record[LAST_WRITE]), expiresAt: date(record[EXPIRES]) }
}

/** Store failures outside a request still surface as the store-unavailable error. */
async function guard<T>(operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (cause) {
    if (cause instanceof SessionConflictError || cause instanceof TypeError) throw cause
    throw new SessionStoreError(operation, cause)
  }
}

/** Destroys every session of the user except those in `except`; resolves the ids destroyed. */
export async function destroyUserSessions(store: Store, prefix: string, userId: string, except: readonly string[] = []): Promise<string[]> {
  const sessions = await listUserSessions(store, prefix, userId)
  const doomed = sessions.map((s) => s.id).filter((id) => !except.includes(id))
  await Promise.all(doomed.map((id) => guard('destroy', () => store.destroy(prefix + id))))
  await guard('apply', () => unbindSessions(store, indexKey(prefix, userId), doomed))
  return doomed
}
