import { encodeValue } from './values.js'

/**
 * The Store contract. A session is a flat record of top-level keys; every write names only the
 * keys it changes, so two requests that change different keys never overwrite each other.
 *
 * `id` is the store key: the middleware's `prefix` followed by the session id. Values are
 * JSON-representable; a store encodes each top-level value on its own (see `encodeValue` and
 * `decodeValue` in values.ts) and must return freshly decoded objects from `get`, never objects
 * it keeps, so a request can mutate what it read. Keys that start with `$` are the session's own
 * bookkeeping (creation time, expiry, per-session maxAge); stores keep them like any other key.
 *
 * Every write carries `ttlMs`: the session must expire that long after the write. A store that
 * fails rejects; it never reports a write it did not make.
 */
export interface Store {
  /** The session's record, or `undefined` when it does not exist or has expired. */
  get(id: string): Promise<Record<string, unknown> | undefined>
  /** Sets and removes the named keys and resets the expiry, all in one atomic step. */
  apply(id: string, patch: Patch): Promise<void>
  /** Adds `by` to a numeric key (absent counts as 0) atomically; resets the expiry; returns the sum. */
  increment(id: string, key: string, by: number, ttlMs: number): Promise<number>
  /** Resets the expiry of an existing session; does nothing when it does not exist. */
  touch(id: string, ttlMs: number): Promise<void>
  /** Removes the session. Removing one that does not exist is not an error. */
  destroy(id: string): Promise<void>
  /**
   * Optional conditional write: applies `patch` only if every key in `patch.expect` still holds
   * the value given there (compared by JSON encoding; `undefined` means the key must be absent),
   * checking and writing in one atomic step. Resolves `true` when written, `false` when a key
   * differed (and then nothing was written). `update()` and `conflicts: 'reject'` need it.
   */
  applyIf?(id: string, patch: ConditionalPatch): Promise<boolean>
  /**
   * Optional fast path of `get`: each value still as its stored JSON text, for stores that keep
   * one JSON text per key. The middleware then decodes only the keys a request reads, reads the
   * object through its own keys only, and never modifies it; so a store may hand out an object it
   * keeps, provided it never changes that object afterwards. A store that holds its sessions in
   * the process may answer at once instead of with a promise (MemoryStore does).
   */
  getEncoded?(id: string): Promise<Readonly<Record<string, string>> | undefined> | Readonly<Record<string, string>> | undefined
  /** Closes a connection that the store opened itself. */
  close?(): Promise<void>
}

export interface Patch {
  /** Top-level keys to write, each to its new value. */
  set?: Record<string, unknown>
  /** Top-level keys to remove. */
  unset?: string[]
  /** The session expires this many milliseconds after the write. */
  ttlMs: number
}

export interface ConditionalPatch extends Patch {
  /**
   * Keys that must still hold these values for the write to happen: `undefined` means absent,
   * `PRESENT` any value at all. A store that does not know `PRESENT` compares it as a value, which
   * no key holds: the write is refused, and the middleware then loads the session instead.
   */
  expect: Record<string, unknown>
}

/** In `ConditionalPatch.expect`: the key must hold something (the session exists). */
export const PRESENT: unique symbol = Symbol.for('koa-atomic-session#present')

/**
 * Internal, between the middleware and this package's stores: a patch may carry under this key the
 * JSON text (`encodeValue`) of some of its `set` values, made already for the size check, so that a
 * store need not encode a large value twice. Other stores never look at it.
 */
export const ENCODED = Symbol('koa-atomic-session#encoded')

/** A patch that may carry the texts of its values (see `ENCODED`). */
export type EncodedPatch = Patch & { [ENCODED]?: Record<string, string> }

/** The stored text of `patch.set[key]`: the one the middleware made, or made now. */
export function storedText(patch: EncodedPatch, key: string): string {
  const texts = patch[ENCODED]
  // Own keys only: a data key may be named like a method of Object.prototype ('toString').
  return texts !== undefined && Object.hasOwn(texts, key) ? (texts[key] as string) : encodeValue(patch.set?.[key])
}

/**
 * Internal, between this package's stores and the size check: `getEncoded` fields may carry under
 * this key the sum, over every field, of the key's length, its text's length and 4 (UTF-16 units),
 * so that checking a write against `maxBytes` needs no walk over the fields. It must be exact.
 */
export const FIELDS_LENGTH = Symbol('koa-atomic-session#fieldsLength')

/** The units one field adds to `FIELDS_LENGTH`: its key and text, quotes, colon and comma. */
export const fieldLength = (key: string, text: string): number => key.length + text.length + 4
