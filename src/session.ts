import type { Context } from 'koa'
import { Changes, type Pending } from './changes.js'
import { backOff, changedKey } from './conflicts.js'
import { parseDuration } from './duration.js'
import { readKoaSessionCookie } from './koa-session.js'
import {
  SessionConflictError,
  SessionOptionError,
  SessionStateError,
  SessionStoreError,
  SessionValueError,
} from './errors.js'
import { emit } from './events.js'
import { ID_PATTERN, newId } from './ids.js'
import { CREATED, decodeMeta, EXPIRES, idleTtl, INDEX_UNTIL, LAST_WRITE, MAX_AGE, pastAbsolute, renewDue, RETIRED, ttlAt, USER, type Meta } from './lifetime.js'
import type { SessionConfig } from './options.js'
import { ENCODED, PRESENT, type EncodedPatch } from './store.js'
import { callStore, isPromiseLike, readStored, type Loaded } from './store-calls.js'
import { assertUserId, bindSession, extendIndex, indexKey, unbindSessions } from './user-index.js'
import { STALE_SIGNATURE } from './transport.js'
import { assertDataKey, assertStorable, decodeValue, emptyRecord, encodeValue, isDataField, NOT_A_NUMBER_PROBLEM } from './values.js'
import { createView, type RegenerateOptions, type Session, type ViewState } from './view.js'

/** Bookkeeping a new session's first write carries, when set. */
const META_WRITTEN_AT_CREATION = [CREATED, MAX_AGE, USER, INDEX_UNTIL]

/**
 * What a write to a session it has not loaded expects of it (lazy sessions): stored (a write must
 * never create a session under an id the client chose: that is session fixation), bound to no
 * user (or the user's index must be kept alive), not retired (read-only), no maxAge of its own
 * (the write sets the expiry). With `absoluteMaxAge` such a write loads first: it must know when
 * the session began.
 */
const PLAIN_SESSION: Readonly<Record<string, unknown>> = { [EXPIRES]: PRESENT, [USER]: undefined, [RETIRED]: undefined, [MAX_AGE]: undefined }

/** A load that ended without waiting. */
const LOADED: Promise<void> = Promise.resolve()

/**
 * One request's session: what was loaded, what changed, and how to write it back. The user sees
 * it through the Proxy made by view.ts; Koa's context reaches it through the middleware.
 *
 * `id` is the id the session has now; `#stored` says whether the store holds it (assumed true for
 * an id the client sent, until a load says otherwise).
 */
export class SessionState implements ViewState {
  readonly ctx: Context
  readonly config: SessionConfig
  id: string | undefined
  isNew = true
  /** The data and what this request changed of it. */
  readonly changes: Changes
  loaded = false
  destroyed = false

  #incomingRead = false
  /** The id the client holds: the valid one it sent, or the last one sent back to it. */
  #clientId: string | undefined
  #clientIdDead = false
  /** `ctx.session = null` clears the client's id whatever it held, as koa-session does. */
  #clearClient = false
  #stored = false
  #loading: Promise<void> | undefined
  /** The load ended without waiting (a store that answers at once): see `loadEagerly`. */
  #loadedAtOnce = false
  /** `s.maxAge` changed since the last write (the one piece of bookkeeping a request changes). */
  #maxAgeUnwritten = false
  /** The koa-session cookie this request imported (to clear once stored), and its expiry. */
  #imported: { name: string; expires: number | undefined; hasData: boolean } | undefined
  /** `s.maxAge` was assigned in this request. */
  #maxAgeSet = false
  /** `onStoreError: 'anonymous'` and the store failed: an empty session that refuses every write. */
  #anonymous = false
  #touched = false
  #expiryMoved = false
  /** Ids this request destroyed with `ctx.session = null`, removed from the store at commit. */
  #doomed: string[] = []
  #view: Session | undefined
  /** The session's bookkeeping (`$` keys): decoded from `#metaFields` when first needed. */
  #meta: Meta | undefined
  #metaFields: Readonly<Record<string, string>> | undefined

  constructor(ctx: Context, config: SessionConfig) {
    this.ctx = ctx
    this.config = config
    this.changes = new Changes(config.conflicts === 'reject')
  }

  get meta(): Meta {
    return (this.#meta ??= decodeMeta(this.#metaFields))
  }

  // ---- the id the request carries ----

  /** Reads and checks the id the client sent, once. Returns it when it is well formed. */
  incomingId(): string | undefined {
    if (this.#incomingRead) return this.#clientId
    this.#incomingRead = true
    const id = this.config.transport.get(this.ctx)
    if (id === undefined) return undefined
    if (!ID_PATTERN.test(id)) {
      emit(this.ctx, 'session:invalid', undefined)
      return undefined
    }
    this.#clientId = id
    if (this.id === undefined && !this.destroyed) {
      this.id = id
      this.isNew = false
      this.#stored = true
    }
    return id
  }

  // ---- what the user sees ----

  view(): Session | null {
    if (this.destroyed) return null
    this.incomingId()
    return (this.#view ??= createView(this))
  }

  async loadView(): Promise<Session | null> {
    await this.load()
    return this.view()
  }

  /** Loads once per request; later calls share the first. */
  load(): Promise<void> {
    if (this.#loading === undefined) {
      let waiting: Promise<void> | undefined
      try {
        waiting = this.#loadNow()
      } catch (error) {
        waiting = Promise.reject(error)
      }
      this.#loadedAtOnce = waiting === undefined
      this.#loading = waiting ?? LOADED
    }
    return this.#loading
  }

  /**
   * The middleware's eager load: `undefined` when it is already over, as it is with a store that
   * answers at once (MemoryStore), so that request awaits nothing before its handlers.
   */
  loadEagerly(): Promise<void> | undefined {
    const loading = this.load()
    return this.#loadedAtOnce ? undefined : loading
  }

  /**
   * Reads the session the client's id names. Nothing here is async unless the store is: with a
   * store that answers at once, the load makes no promise and returns `undefined`.
   */
  #loadNow(): Promise<void> | undefined {
    const id = this.incomingId()
    if (id === undefined || this.id !== id) {
      if (id === undefined && this.config.importKoaSessionCookie !== undefined) this.#importKoaSession(this.config.importKoaSessionCookie)
      this.loaded = true
      return undefined
    }
    let reading: ReturnType<typeof readStored>
    try {
      reading = readStored(this.ctx, this.config.store, this.#key(id), id)
    } catch (error) {
      return this.#readFailed(error)
    }
    return isPromiseLike(reading) ? this.#takeWhenRead(reading, id) : this.#take(reading, id)
  }

  async #takeWhenRead(reading: PromiseLike<Loaded | undefined>, id: string): Promise<void> {
    let loaded: Loaded | undefined
    try {
      loaded = await reading
    } catch (error) {
      return this.#readFailed(error)
    }
    await this.#take(loaded, id)
  }

  /** The store failed to answer: with `onStoreError: 'anonymous'`, an empty read-only session. */
  #readFailed(error: unknown): undefined {
    if (this.config.onStoreError !== 'anonymous' || !(error instanceof SessionStoreError)) throw error
    this.#anonymous = true
    this.#unknownId()
    return undefined
  }

  /** Takes what the store answered for `id` as this request's session. */
  #take(loaded: Loaded | undefined, id: string): Promise<void> | undefined {
    // Bookkeeping decoded for this check is kept, not decoded again when first read.
    let meta: Meta | undefined
    if (loaded && this.config.absoluteMaxAge !== undefined) {
      if ('fields' in loaded) meta = decodeMeta(loaded.fields)
      const created = 'fields' in loaded ? meta?.[CREATED] : loaded.record[CREATED]
      if (pastAbsolute(Date.now(), this.config.absoluteMaxAge, created)) return this.#endAbsolute(id)
    }
    this.loaded = true
    if (!loaded) {
      emit(this.ctx, 'session:expired', id)
      this.#unknownId()
      return undefined
    }
    this.#adopt(loaded, meta)
    return undefined
  }

  /** The session outlived `absoluteMaxAge`: it is destroyed, and the load ends without it. */
  async #endAbsolute(id: string): Promise<void> {
    await this.#destroyStored(id)
    this.#take(undefined, id)
  }

  /** The id the client sent names no session this request can use: the load ends without one. */
  #unknownId(): void {
    this.loaded = true
    this.id = undefined
    this.isNew = true
    this.#stored = false
  }

  /**
   * A session koa-session kept in its cookie becomes this session: its data pending, written
   * under a new id at the end of the request in one write. It moved; it did not begin.
   */
  #importKoaSession(name: string): void {
    const { found, session } = readKoaSessionCookie(this.ctx, name)
    if (!found) return
    const hasData = session !== undefined && Object.keys(session.data).length > 0
    this.#imported = { name, expires: session?.expires, hasData }
    if (!hasData) return
    for (const [key, value] of Object.entries(session.data)) this.changes.assign(key, value)
    if (session.maxAge !== undefined) this.setMaxAge(session.maxAge)
    this.isNew = false
    this.#ensureId()
  }

  /**
   * Takes a loaded session as this session, keeping changes made before it arrived. `meta`: the
   * bookkeeping of `loaded.fields`, when already decoded.
   */
  #adopt(loaded: Loaded, meta?: Meta): void {
    // Bookkeeping this request set before the load (a lazy session) is newer than the stored.
    const maxAge = this.#maxAgeUnwritten ? this.#meta?.[MAX_AGE] : undefined
    const expires = this.#expiryMoved ? this.#meta?.[EXPIRES] : undefined
    if ('fields' in loaded) {
      this.#meta = meta
      this.#metaFields = loaded.fields
    } else {
      this.#metaFields = undefined
      const meta: Record<string, unknown> = emptyRecord()
      for (const key in loaded.record) {
        if (key.charCodeAt(0) === 36 /* $ */) meta[key] = loaded.record[key]
        // Another library may have stored names of the session's API (`id`) as data; here they cannot be.
        if (!isDataField(key)) delete loaded.record[key]
      }
      this.#meta = meta as Meta
    }
    if (maxAge !== undefined) this.meta[MAX_AGE] = maxAge
    if (expires !== undefined) this.meta[EXPIRES] = expires
    this.changes.adopt(loaded)
  }

  /** Whether this request knows the session's data (`key`: that key's value): loaded, replaced or set here. */
  #knows(key?: string): boolean {
    return this.loaded || this.changes.replaced || (key !== undefined && this.changes.known.has(key))
  }

  /** Throws unless data may be read now: a lazy session must be loaded first. */
  assertReadable(key?: string): void {
    if (this.#knows(key)) return
    throw new SessionStateError(
      `${key === undefined ? 'ctx.session' : `ctx.session.${key}`} was read before the session was loaded: with ` +
        'lazy: true, call await ctx.loadSession() before reading session data (writing needs no load).',
    )
  }

  read(key: string): unknown {
    this.assertReadable(key)
    return this.changes.read(key)
  }

  has(key: string): boolean {
    this.assertReadable(key)
    return this.changes.has(key)
  }

  keys(): string[] {
    this.assertReadable()
    return this.changes.keys()
  }

  toJSON(): Record<string, unknown> {
    this.assertReadable()
    return this.changes.toJSON()
  }

  assign(key: string, value: unknown): void {
    if (key === 'maxAge') return this.setMaxAge(value)
    this.#assertLive()
    this.changes.assign(key, value)
    if (this.changes.changed.has(key)) this.#ensureId()
  }

  remove(key: string): void {
    this.#assertLive()
    this.changes.remove(key)
  }

  /**
   * `ctx.session = value`: `null` destroys; a plain object replaces all data (a new session after
   * `null`). Its `maxAge`, as in koa-session, is the session's lifetime, not data.
   */
  replace(value: unknown): void {
    if (value === null) return this.#doom()
    // `ctx.session = ctx.session` changes nothing.
    if (value === this.#view) return
    const proto = typeof value === 'object' ? (Object.getPrototypeOf(value) as object | null) : undefined
    if (proto !== Object.prototype && proto !== null) {
      throw new TypeError(
        `ctx.session can only be set to null (to destroy it) or to a plain object (to replace its data), not ${describe(value)}`,
      )
    }
    const { maxAge, ...data } = value as Record<string, unknown>
    if (this.destroyed) this.#startNew()
    this.changes.replace(data, this.loaded)
    if (maxAge !== undefined) this.setMaxAge(maxAge)
    this.#ensureId()
  }

  get maxAge(): number | 'session' {
    return this.meta[MAX_AGE] ?? this.config.maxAge
  }

  setMaxAge(value: unknown): void {
    this.#assertLive()
    const maxAge = value === 'session' ? 'session' : parseDuration(value)
    if (maxAge === undefined) {
      throw new TypeError(`session.maxAge must be milliseconds, a duration such as '2h', or 'session'; got ${String(value)}`)
    }
    this.meta[MAX_AGE] = maxAge
    this.#maxAgeUnwritten = true
    this.#maxAgeSet = true
    this.#ensureId()
  }

  get expiresAt(): Date | undefined {
    const expires = this.meta[EXPIRES]
    return expires === undefined ? undefined : new Date(expires)
  }

  // ---- explicit operations (the session's methods) ----

  async setNow(key: string, value: unknown): Promise<void> {
    assertDataKey(key)
    const raw = this.changes.unwrap(value)
    if (raw === undefined) return this.unsetNow(key)
    assertStorable(key, raw)
    await this.#write({ set: { [key]: raw } })
    this.changes.settle(key, raw)
  }

  async unsetNow(key: string): Promise<void> {
    assertDataKey(key)
    if (this.#stored) await this.#write({ unset: [key] })
    this.changes.settle(key, undefined)
  }

  async increment(key: string, by = 1): Promise<number> {
    assertDataKey(key)
    if (typeof by !== 'number' || !Number.isFinite(by)) throw new SessionValueError(key, 'increment(key, by) needs a finite number as by')
    this.#assertLive()
    const current = this.#knows(key) ? this.changes.value(key) : undefined
    if (current !== undefined && typeof current !== 'number') {
      throw new SessionValueError(key, NOT_A_NUMBER_PROBLEM)
    }
    // The store's counter moves the expiry: a session not loaded may be bound to a user, retired or
    // given its own maxAge, which this request must know first (see #write).
    if (this.#unseen()) await this.load()
    let sum: number
    if (!this.#stored) {
      // Nobody else knows a session that is not stored yet, so its first write can carry the sum.
      sum = (current ?? 0) + by
      await this.#write({ set: { [key]: sum } })
    } else {
      const id = this.id as string
      const now = Date.now()
      const ttl = this.#ttl(now)
      await this.#keepIndexAlive(id, now + ttl)
      sum = await this.#call('increment', id, () => this.config.store.increment(this.#key(id), key, by, ttl))
      // The store moved the expiry, so the cookie re-sent follows it. The stored bookkeeping ($e, what
      // expiresAt reports on later requests) is only written with the session's next write: an
      // increment stays one command.
      this.meta[EXPIRES] = now + ttl
      this.#expiryMoved = true
      emit(this.ctx, 'session:saved', id)
    }
    this.changes.settle(key, sum)
    return sum
  }

  /**
   * Compare-and-set of one key: reads the stored value, computes the next with `fn`, and writes it
   * only if the store still holds what was read; retries on conflict.
   */
  async update(key: string, fn: (current: unknown) => unknown, options: { retries?: number } = {}): Promise<unknown> {
    assertDataKey(key)
    if (typeof fn !== 'function') throw new TypeError(`update("${key}", fn): fn must be a function (current) => next`)
    const retries = options.retries ?? 8
    if (!Number.isInteger(retries) || retries < 0) throw new TypeError('update(key, fn, { retries }): retries must be an integer >= 0')
    this.#assertLive()
    this.#assertConditionalStore('update()')
    this.incomingId()
    if (this.#mustLoadToWrite()) await this.load()
    for (let attempt = 0; attempt <= retries; attempt++) {
      await backOff(attempt)
      // A session not stored yet is known to nobody else: what this request holds is the truth.
      const id = this.#stored ? (this.id as string) : undefined
      const record = id === undefined ? undefined : await callStore(this.ctx, 'get', id, () => this.config.store.get(this.#key(id)))
      const current = id === undefined ? this.changes.value(key) : record?.[key]
      const before = current === undefined ? undefined : encodeValue(current)
      const next = this.changes.unwrap(fn(current))
      if (next instanceof Promise) throw new TypeError(`update("${key}", fn): fn must be synchronous; it returned a promise`)
      if (next !== undefined) assertStorable(key, next)
      const patch = next === undefined ? { unset: [key] } : { set: { [key]: next } }
      const expect = id === undefined ? undefined : { [key]: before === undefined ? undefined : decodeValue(before) }
      if (await this.#write(patch, expect)) {
        this.changes.settle(key, next)
        return next
      }
    }
    throw new SessionConflictError(
      key,
      `update("${key}") lost ${retries + 1} compare-and-set attempts to concurrent writers; nothing was written. Retry later or raise retries.`,
    )
  }

  /** Writes now; a stored session that nothing changed is saved all the same (its expiry moves), as in koa-session. */
  async save(): Promise<void> {
    if (this.destroyed) return this.commit()
    if (this.changes.replaced && !this.loaded) await this.load()
    const patch = this.changes.pending(!this.#unseen())
    if (patch || !this.#stored || this.#maxAgeUnwritten) await this.#writePending(patch ?? {})
    else {
      this.#touched = true
      if (this.#refreshDue()) await this.#refresh()
    }
    this.#sendId()
  }

  async reload(): Promise<void> {
    this.incomingId()
    this.changes.clear()
    this.#maxAgeUnwritten = false
    this.#meta = emptyRecord()
    this.#loading = undefined
    if (!this.#stored || this.id === undefined) {
      this.loaded = true
      return
    }
    const loaded = await readStored(this.ctx, this.config.store, this.#key(this.id), this.id)
    this.loaded = true
    if (loaded) this.#adopt(loaded)
    else this.#startNew()
  }

  touch(): void {
    this.#touched = true
  }

  async destroy(): Promise<void> {
    this.incomingId()
    // A session not loaded may be an id retired by a graced regenerate, which is read-only.
    if (this.#unseen()) await this.load()
    if (this.#stored && this.id !== undefined) {
      await this.#destroyStored(this.id)
      this.#stored = false
    }
    this.#doom()
  }

  async regenerate(options: RegenerateOptions = {}): Promise<void> {
    await this.#rotate(options.keep ?? true, options.graceMs, undefined)
  }

  /** Regenerates the id (fixation defence) and binds the session to `userId` in the user's index. */
  async login(userId: string, options: RegenerateOptions = {}): Promise<void> {
    assertUserId(userId)
    this.#assertConditionalStore('login()')
    await this.#rotate(options.keep ?? true, options.graceMs, userId)
  }

  /** Destroys the session and removes it from its user's index. */
  async logout(): Promise<void> {
    if (!this.loaded) await this.load()
    const user = this.meta[USER]
    const id = this.#stored ? this.id : undefined
    await this.destroy()
    if (user !== undefined && id !== undefined) {
      await this.#call('index', id, () => unbindSessions(this.config.store, indexKey(this.config.prefix, user), [id]))
    }
  }

  /**
   * A new id for this session. The old id is destroyed, or with `graceMs` kept readable (its data
   * as it was before, never the new) for that long, so requests already in flight do not fail.
   * With `userId`, the new id is entered in the user's index before the session is written.
   */
  async #rotate(keep: boolean, graceMs: number | undefined, userId: string | undefined): Promise<void> {
    if (graceMs !== undefined && (!Number.isFinite(graceMs) || graceMs < 0)) {
      throw new TypeError('regenerate({ graceMs }): graceMs must be a number of milliseconds >= 0')
    }
    // Loaded even when nothing is kept: a retired id is read-only, a bound one leaves the user's index.
    if (!this.loaded) await this.load()
    this.incomingId()
    this.#assertWritable()
    const oldId = this.#stored ? this.id : undefined
    const oldUser = this.meta[USER]
    const data = keep && !this.destroyed ? this.changes.all() : emptyRecord()
    const maxAge = keep ? this.meta[MAX_AGE] : undefined
    const user = userId ?? (keep ? this.meta[USER] : undefined)
    const wasNew = this.isNew
    this.#startNew()
    // The session moved to a new id; it did not begin (as in koa-session), unless it starts empty.
    if (keep) this.isNew = wasNew
    if (keep) {
      for (const key in data) this.changes.assign(key, data[key])
      if (maxAge !== undefined) this.setMaxAge(maxAge)
    }
    if (user !== undefined) {
      const id = this.#ensureId()
      const until = Date.now() + 2 * idleTtl(this.maxAge)
      const key = indexKey(this.config.prefix, user)
      this.meta[USER] = user
      this.meta[INDEX_UNTIL] = await this.#call('index', id, () => bindSession(this.config.store, key, id, until))
    }
    if (keep || user !== undefined) await this.#write(this.changes.pending(true) ?? {})
    if (oldId === undefined) return
    if (graceMs) await this.#retire(oldId, graceMs)
    else {
      await this.#destroyStored(oldId)
      // Its entry goes too, or every login of a bound session would leave one behind in the index.
      if (oldUser !== undefined) await this.#call('index', oldId, () => unbindSessions(this.config.store, indexKey(this.config.prefix, oldUser), [oldId]))
    }
  }

  /** Leaves `id` readable, with the data it has now, for `graceMs`; then the store expires it. */
  async #retire(id: string, graceMs: number): Promise<void> {
    await this.#call('retire', id, () => this.config.store.apply(this.#key(id), { set: { [RETIRED]: Date.now() }, ttlMs: graceMs }))
    if (id === this.#clientId) this.#clientIdDead = true
  }

  // ---- the end of the request ----

  /**
   * Writes what the request changed, refreshes the expiry when due, and sends the id. `undefined`
   * when there was nothing to wait for, as on most requests that only read.
   */
  commit(): Promise<void> | undefined {
    const settling = (this.changes.replaced && !this.loaded) || this.#doomed.length > 0 ? this.#settleThenStore() : this.#storeChanges()
    if (settling !== undefined) return this.#sendIdAfter(settling)
    this.#sendId()
    return undefined
  }

  async #settleThenStore(): Promise<void> {
    if (this.changes.replaced && !this.loaded) await this.load()
    for (const id of this.#doomed.splice(0)) await this.#destroyStored(id)
    await this.#storeChanges()
  }

  /** Writes the pending changes, or refreshes the expiry when due; `undefined` when neither is needed. */
  #storeChanges(): Promise<void> | undefined {
    if (this.destroyed) return undefined
    const patch = this.changes.pending(!this.#unseen())
    if (patch || this.#maxAgeUnwritten || (!this.#stored && this.config.saveUninitialized)) return this.#writePending(patch ?? {})
    if (this.#stored && !this.#expiryMoved && this.#refreshDue()) return this.#refresh()
    return undefined
  }

  async #sendIdAfter(settling: Promise<void>): Promise<void> {
    await settling
    this.#sendId()
  }

  #refreshDue(): boolean {
    const due =
      this.#touched ||
      (this.loaded && (this.config.rolling || (this.config.renew && renewDue(Date.now(), this.maxAge, this.meta[EXPIRES]))))
    // Checked last: reading the bookkeeping decodes it.
    return due && !this.#anonymous && this.meta[RETIRED] === undefined
  }

  /**
   * Extends the stored expiry (and the recorded one) with an empty write. A session touched
   * before it was loaded is loaded first: it may be gone (a touch never recreates it), bound to a
   * user whose index must outlive it, or retired.
   */
  async #refresh(): Promise<void> {
    if (!this.loaded) await this.load()
    if (this.#stored && this.meta[RETIRED] === undefined) await this.#write({})
  }

  /** Makes the client hold the id it should: the current one, or none after a destroy. */
  #sendId(): void {
    if (this.ctx.headerSent) return
    // koa-session's cookie goes once its session is stored here, or at once when it held nothing usable.
    if (this.#imported && (!this.#imported.hasData || this.#stored)) {
      this.ctx.cookies.set(this.#imported.name, '', { path: this.config.cookie?.path ?? '/', domain: this.config.cookie?.domain, expires: new Date(0), signed: true })
      this.#imported = undefined
    }
    const target = this.#stored && !this.destroyed ? this.id : undefined
    const transport = this.config.transport
    if (target === undefined) {
      if ((this.#clientId !== undefined && this.#clientIdDead) || this.#clearClient) {
        transport.set(this.ctx, null, { maxAge: undefined })
        this.#clientId = undefined
        this.#clearClient = false
      }
      return
    }
    const stale = (this.ctx as unknown as Record<symbol, unknown>)[STALE_SIGNATURE] === true
    // Most requests: the client holds this id already and no expiry moved.
    if (target === this.#clientId && !this.#expiryMoved && !stale) return
    const persistent = this.maxAge !== 'session'
    // A changed maxAge changes the cookie itself (persistent or not), even when the id stays.
    const reshaped = this.#expiryMoved && this.#maxAgeSet
    // A browser-session cookie has no expiry to move; rolling re-sends it all the same, as in koa-session.
    const moved = this.#expiryMoved && (persistent || this.config.rolling)
    if (target === this.#clientId && !moved && !reshaped && !stale) return
    transport.set(this.ctx, target, { maxAge: persistent ? this.#remainingMs() : undefined })
    this.#clientId = target
    this.#clientIdDead = false
  }

  // ---- writing ----

  /** Writes the pending patch; with `conflicts: 'reject'`, only if every key it read still holds. */
  async #writePending(patch: Pending): Promise<void> {
    const { changed, removed, reads } = this.changes
    const expect = this.#stored ? reads?.expect([...changed, ...removed]) : undefined
    if (await this.#write(patch, expect)) return
    const id = this.id as string
    throw new SessionConflictError(await changedKey(this.config.store, this.#key(id), expect ?? {}))
  }

  /**
   * One atomic write of `patch` plus bookkeeping; creates the session when it is not stored. With
   * `expect`, a conditional write: resolves `false`, having written nothing, when a key differs.
   */
  async #write(patch: Pending, expect?: Record<string, unknown>): Promise<boolean> {
    const store = this.config.store
    if (this.#mustLoadToWrite()) await this.load()
    this.#assertLive()
    this.incomingId()
    const created = !this.#stored
    const id = this.#ensureId()
    const now = Date.now()
    const set: Record<string, unknown> = { ...patch.set }
    const encoded = this.changes.assertSize(set, this.loaded, this.config.maxBytes, patch[ENCODED])
    // A session stored without a creation time (written by koa-session, say) starts counting now,
    // or absoluteMaxAge would never end it.
    if (created || (this.loaded && this.meta[CREATED] === undefined)) {
      this.meta[CREATED] = now
      set[CREATED] = now
    }
    for (const key of created ? META_WRITTEN_AT_CREATION : this.#maxAgeUnwritten ? [MAX_AGE] : []) {
      const value = this.meta[key as keyof Meta]
      if (value !== undefined) set[key] = value
    }
    const ttlMs = this.#ttl(now)
    set[EXPIRES] = now + ttlMs
    if (this.meta[USER] !== undefined) {
      set[LAST_WRITE] = now
      if (await this.#keepIndexAlive(id, now + ttlMs)) set[INDEX_UNTIL] = this.meta[INDEX_UNTIL]
    }
    // The texts made for the size check go with the write: the store need not encode them again.
    const write: EncodedPatch = patch.unset?.length ? { set, unset: patch.unset, ttlMs, [ENCODED]: encoded } : { set, ttlMs, [ENCODED]: encoded }
    if (this.#unseen()) {
      // Written without loading: only on condition that the session is not one whose bookkeeping
      // this write must honour. Otherwise it is loaded, and the write made knowing it.
      const written = await this.#call('applyIf', id, () => store.applyIf!(this.#key(id), { ...write, expect: { ...expect, ...PLAIN_SESSION } }))
      if (!written) {
        await this.load()
        return this.#write(patch, expect)
      }
    } else if (expect && store.applyIf) {
      const written = await this.#call('applyIf', id, () => store.applyIf!(this.#key(id), { ...write, expect }))
      if (!written) return false
    } else {
      await this.#call('apply', id, () => store.apply(this.#key(id), write))
    }
    this.meta[EXPIRES] = now + ttlMs
    this.#stored = true
    this.#expiryMoved = true
    this.#maxAgeUnwritten = false
    this.changes.written(patch)
    if (created) emit(this.ctx, 'session:created', id)
    emit(this.ctx, 'session:saved', id)
    return true
  }

  /**
   * A session bound to a user must never outlive the user's index: before a write or an increment
   * moves its expiry to `expires`, the index is extended when that would pass it. Resolves whether it was.
   */
  async #keepIndexAlive(id: string, expires: number): Promise<boolean> {
    const user = this.meta[USER]
    if (user === undefined || (this.meta[INDEX_UNTIL] ?? 0) >= expires) return false
    const until = expires + idleTtl(this.maxAge)
    const key = indexKey(this.config.prefix, user)
    this.meta[INDEX_UNTIL] = await this.#call('index', id, () => extendIndex(this.config.store, key, until))
    return true
  }

  /**
   * Whether a write must load the session first, not being able to write it unseen (see #write):
   * with `absoluteMaxAge` it must know when the session began, or writes would keep it alive for
   * ever; and a store without a conditional write cannot write on condition.
   */
  #mustLoadToWrite(): boolean {
    return this.#unseen() && (this.config.absoluteMaxAge !== undefined || !this.config.store.applyIf)
  }

  /** Stored but not loaded: this request does not know what the store holds of the session. */
  #unseen(): boolean {
    return this.#stored && !this.loaded
  }

  #assertConditionalStore(feature: string): void {
    if (!this.config.store.applyIf) {
      throw new SessionOptionError(
        `${feature} needs a store with a conditional write (applyIf); this store has none ` +
          '(fromWholeObjectStore cannot offer one: its stores keep whole objects). Use MemoryStore, RedisStore or MongoStore.',
      )
    }
  }

  async #destroyStored(id: string): Promise<void> {
    await this.#call('destroy', id, () => this.config.store.destroy(this.#key(id)))
    if (id === this.#clientId) this.#clientIdDead = true
    emit(this.ctx, 'session:destroyed', id)
  }

  /** A store operation that changes the session: refused while the session is read-only. */
  #call<T>(operation: string, id: string, run: () => Promise<T>): Promise<T> {
    this.#assertWritable()
    return callStore(this.ctx, operation, id, run)
  }

  /** An anonymous session (store down) and a retired id (after a graced regenerate) are read-only. */
  #assertWritable(): void {
    if (this.#anonymous) {
      throw new SessionStoreError(
        'write',
        new Error('the store was unreachable when this request loaded its session (onStoreError: \'anonymous\'), so the session is read-only'),
      )
    }
    if (this.meta[RETIRED] !== undefined) {
      throw new SessionStateError(
        'this session id was replaced moments ago (regenerate or login with graceMs) and is read-only until it expires; retry the request with the new id',
        409,
      )
    }
  }

  // ---- lifetimes and ids ----

  #ttl(now: number): number {
    const ttl = ttlAt(now, this.maxAge, this.config.absoluteMaxAge, this.meta[CREATED])
    // An imported koa-session session keeps the expiry it had, until its first write here.
    const imported = !this.#stored ? this.#imported?.expires : undefined
    return imported === undefined ? ttl : Math.max(1, Math.min(ttl, imported - now))
  }

  #remainingMs(): number {
    const expires = this.meta[EXPIRES]
    return expires === undefined ? this.#ttl(Date.now()) : Math.max(0, expires - Date.now())
  }

  /** The id, made now if the session has none: as soon as it has something to store, it has an id. */
  #ensureId(): string {
    this.incomingId()
    return (this.id ??= newId(this.ctx, this.config.idBytes, this.config.genid))
  }

  #key(id: string): string {
    return this.config.prefix + id
  }

  // ---- state changes ----

  /** `ctx.session = null`: the session reads null; its stored copy goes at commit. */
  #doom(): void {
    // A read-only session cannot be destroyed either: answering as if it were would be a lie.
    this.#assertWritable()
    this.incomingId()
    if (this.#stored && this.id !== undefined) {
      this.#doomed.push(this.id)
      if (this.id === this.#clientId) this.#clientIdDead = true
    }
    this.#startNew()
    this.destroyed = true
    this.#clearClient = true
  }

  /** Forgets the current session: a new, empty, unstored one with no id yet. */
  #startNew(): void {
    this.id = undefined
    this.isNew = true
    this.#stored = false
    this.destroyed = false
    this.loaded = true
    this.#maxAgeUnwritten = false
    this.#meta = emptyRecord()
    this.#metaFields = undefined
    this.changes.clear()
  }

  #assertLive(): void {
    if (this.destroyed) {
      throw new SessionStateError('this session was destroyed in this request; assign ctx.session = {} to start a new one')
    }
  }
}

/** What a value is, for an error message: its class or its type. */
function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array'
  if (typeof value !== 'object') return `a ${typeof value}`
  return `a ${(value as { constructor?: { name?: string } }).constructor?.name ?? 'object'}`
}
