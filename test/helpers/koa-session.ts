/**
 * What the koa-session tests share: koa-session 7 itself (a devDependency, run as its users run
 * it) and an external store for it that keeps sessions the way koa-redis does.
 */
import koaSession from 'koa-session'

export { koaSession }

/** koa-session's own options, as its factory takes them. */
export type KoaSessionOptions = NonNullable<Parameters<typeof koaSession>[0]>

/**
 * An external store for koa-session, in memory, with koa-redis's semantics: each session is one
 * JSON string under the key koa-session hands it (no prefix of its own), kept for the `maxAge`
 * koa-session passes (milliseconds; anything else, as koa-session's `'session'`, means no TTL).
 * It serialises, so no request ever shares an object with the store, as over a network.
 */
export class KoaSessionMemoryStore {
  readonly entries = new Map<string, { json: string; expiresAt: number }>()

  async get(key: string): Promise<Record<string, unknown> | undefined> {
    const entry = this.#live(key)
    return entry ? (JSON.parse(entry.json) as Record<string, unknown>) : undefined
  }

  async set(key: string, session: unknown, maxAge?: unknown): Promise<void> {
    const expiresAt = typeof maxAge === 'number' ? Date.now() + maxAge : Number.POSITIVE_INFINITY
    this.entries.set(key, { json: JSON.stringify(session), expiresAt })
  }

  async destroy(key: string): Promise<void> {
    this.entries.delete(key)
  }

  /** The keys of the sessions it holds now. */
  keys(): string[] {
    return [...this.entries.keys()].filter((key) => this.#live(key))
  }

  /** The TTL left on `key` in milliseconds, or `undefined` without one. */
  ttl(key: string): number | undefined {
    const entry = this.#live(key)
    return entry && Number.isFinite(entry.expiresAt) ? entry.expiresAt - Date.now() : undefined
  }

  #live(key: string): { json: string; expiresAt: number } | undefined {
    const entry = this.entries.get(key)
    if (entry && entry.expiresAt <= Date.now()) this.entries.delete(key)
    return entry && entry.expiresAt > Date.now() ? entry : undefined
  }
}

/** The user data koa-session sees in what it stored: its `_`-prefixed bookkeeping left out. */
export function koaSessionData(stored: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(stored).filter(([key]) => !key.startsWith('_')))
}
