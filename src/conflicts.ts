import { setTimeout as sleep } from 'node:timers/promises'
import type { Store } from './store.js'
import { decodeValue, encodeValue } from './values.js'

/**
 * With `conflicts: 'reject'`: the value each key had when this request first read it, so the
 * end-of-request patch can demand, in the same atomic step as the write, that the store still
 * holds it. Keys the request never read (blind assignments) are not checked.
 */
export class ReadLog {
  /** Key -> its JSON encoding when first read (`undefined`: it was absent). */
  readonly #first = new Map<string, string | undefined>()

  note(key: string, value: unknown): void {
    if (!this.#first.has(key)) this.#first.set(key, value === undefined ? undefined : encodeValue(value))
  }

  /** What the store must still hold for a patch of these keys, or `undefined` when none was read. */
  expect(keys: Iterable<string>): Record<string, unknown> | undefined {
    let expect: Record<string, unknown> | undefined
    for (const key of keys) {
      if (!this.#first.has(key)) continue
      const text = this.#first.get(key)
      ;(expect ??= {})[key] = text === undefined ? undefined : decodeValue(text)
    }
    return expect
  }

  /** After a write, what was written is what later writes of this request must find. */
  wrote(key: string, value: unknown): void {
    if (this.#first.has(key)) this.#first.set(key, value === undefined ? undefined : encodeValue(value))
  }
}

/** After a refused conditional write: the first expected key whose stored value differs. */
export async function changedKey(store: Store, id: string, expect: Record<string, unknown>): Promise<string> {
  const keys = Object.keys(expect)
  const record = await store.get(id).catch(() => undefined)
  const differs = (key: string) => encodeValue(record?.[key]) !== encodeValue(expect[key])
  return keys.find(differs) ?? keys[0] ?? '(unknown)'
}

/**
 * Waits before compare-and-set attempt `attempt` (none before the first): a random, growing while,
 * because racing writers that all retry at once would only collide again.
 */
export function backOff(attempt: number): Promise<void> | undefined {
  return attempt > 0 ? sleep(Math.random() * Math.min(2000, 10 * 2 ** attempt)) : undefined
}
