import type { Context } from 'koa'
import { SessionError, SessionStoreError, SessionValueError } from './errors.js'
import { emit } from './events.js'
import type { Store } from './store.js'

/**
 * How a request's session calls its store. Whatever a store throws or rejects with becomes a
 * `SessionStoreError` (503, the cause kept) and a `session:error` event, except this package's own
 * errors (a conflict, a value that cannot be incremented), which reach the app as they are.
 */

/** A session as a store returned it: JSON text per key (`getEncoded`), or decoded. */
export type Loaded = { fields: Readonly<Record<string, string>> } | { record: Record<string, unknown> }

/** Runs one store operation on session `id`. */
export async function callStore<T>(ctx: Context, operation: string, id: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (cause) {
    throw storeFailure(ctx, operation, id, cause)
  }
}

/** What a store operation's failure is thrown as, reported to `session:error` listeners. */
export function storeFailure(ctx: Context, operation: string, id: string, cause: unknown): unknown {
  if (cause instanceof SessionError || cause instanceof SessionValueError) return cause
  const error = new SessionStoreError(operation, cause)
  emit(ctx, 'session:error', id, error)
  return error
}

/**
 * Reads session `id` (stored under `key`), through the store's encoded fast path when it has one.
 * A store that answers that at once (MemoryStore) is taken at its word: no promise is made, so a
 * request that only reads its session waits for nothing.
 */
export function readStored(ctx: Context, store: Store, key: string, id: string): Loaded | undefined | Promise<Loaded | undefined> {
  if (!store.getEncoded) {
    return callStore(ctx, 'get', id, async () => {
      const record = await store.get(key)
      return record && { record }
    })
  }
  let answer: ReturnType<NonNullable<Store['getEncoded']>>
  try {
    answer = store.getEncoded(key)
  } catch (cause) {
    throw storeFailure(ctx, 'get', id, cause)
  }
  if (!isPromiseLike(answer)) return answer && { fields: answer }
  return callStore(ctx, 'get', id, async () => {
    const fields = await answer
    return fields && { fields }
  })
}

export function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}
