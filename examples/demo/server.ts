/**
 * A Koa app to click through in a browser: `npm start`, then open the address it prints.
 *
 * Environment:
 *   PORT          port to listen on (default 3000; the host is always 127.0.0.1)
 *   SESSION_KEYS  comma-separated cookie signing keys, newest first (default: a fixed demo key)
 *   REDIS_URL     use the Redis store at this URL instead of the in-process MemoryStore
 *
 * Tests build the app with `createDemoApp()` and listen on a port of their own; the server
 * starts only when this file is run directly.
 */
import { once } from 'node:events'
import { realpathSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import Koa from 'koa'
import type { Context } from 'koa'
import { session, type SessionMiddleware, type Store, type UserSession } from '../../src/index.js'
import { idPrefix, renderPage, type Device, type Product } from './page.js'

const HOST = '127.0.0.1'

// Anyone who knows a signing key can forge session cookies, so this one is only for trying the
// demo on one's own machine.
const DEMO_KEY = 'koa-atomic-session-demo-key-do-not-use-elsewhere'

const PRODUCTS: readonly Product[] = [
  { id: 'tea', name: 'Green tea' },
  { id: 'mug', name: 'Enamel mug' },
  { id: 'socks', name: 'Wool socks' },
  { id: 'book', name: 'Paperback novel' },
]

// Forms here carry a user name or a product id; anything bigger is not one of our forms.
const FORM_LIMIT_BYTES = 4 * 1024
const USER_NAME_MAX = 40

/*
 * What this app keeps in the session: user?: string, views?: number, clicks?: number,
 * cart?: { items: string[] } (product ids), flash?: string (a one-time notice).
 *
 * A real app declares these once, by augmenting the library's SessionData interface, and then
 * `ctx.session.user` is typed everywhere. The demo does not, because it is type-checked together
 * with the library's tests, whose sessions hold other keys; so it reads values defensively.
 */

/** Signing keys from SESSION_KEYS, or the demo key when it is unset or empty. */
export function sessionKeys(env: NodeJS.ProcessEnv = process.env): { keys: string[]; fromEnv: boolean } {
  const keys = (env.SESSION_KEYS ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== '')
  return keys.length > 0 ? { keys, fromEnv: true } : { keys: [DEMO_KEY], fromEnv: false }
}

/** The demo app; `store` defaults to the library's embedded MemoryStore. */
export function createDemoApp(store?: Store): Koa {
  const app = new Koa()
  app.keys = sessionKeys().keys
  // Kept, not just passed to app.use: the middleware also answers "which sessions does this user
  // have?" (listByUser) and ends them (destroyByUser), outside any one request's session.
  const sessions = session(store ? { store } : {})
  app.use(sessions)

  const storeName = store?.constructor.name ?? 'MemoryStore'
  const routes: Record<string, (ctx: Context) => Promise<void>> = {
    'GET /': (ctx) => showPage(ctx, storeName, sessions),
    'POST /login': logIn,
    'POST /logout': logOut,
    'POST /sessions/revoke': (ctx) => revokeSession(ctx, sessions),
    'POST /sessions/others': (ctx) => endOtherSessions(ctx, sessions),
    'POST /cart/add': addToCart,
    'POST /cart/clear': clearCart,
    'POST /click': click,
  }
  app.use(async (ctx) => {
    const route = routes[`${ctx.method} ${ctx.path}`]
    if (route) await route(ctx) // anything else is Koa's default 404
  })
  return app
}

// ---- the page ----

async function showPage(ctx: Context, storeName: string, sessions: SessionMiddleware): Promise<void> {
  ctx.session.views = (ctx.session.views ?? 0) + 1

  const flash: unknown = ctx.session.flash
  if (flash !== undefined) delete ctx.session.flash

  // The session would be written at the end of the request anyway; writing it now lets a first
  // visit's page show the id and expiry that the visit creates.
  await ctx.session.save()

  const cart: unknown = ctx.session.cart?.items
  const clicks: unknown = ctx.session.clicks
  const user = currentUser(ctx)
  // Listed after the save above, so this device's row shows the write this visit just made.
  const devices = user === undefined ? undefined : describeDevices(await sessions.listByUser(user), ctx.sessionId)
  ctx.set('Cache-Control', 'no-store')
  ctx.type = 'html'
  ctx.body = renderPage({
    sessionId: ctx.session.id,
    isNew: ctx.session.isNew,
    expiresAt: ctx.session.expiresAt,
    user,
    devices,
    views: ctx.session.views,
    clicks: typeof clicks === 'number' ? clicks : 0,
    cart: Array.isArray(cart) ? cart.map((id) => PRODUCTS.find((p) => p.id === id)?.name ?? String(id)) : [],
    products: PRODUCTS,
    flash: typeof flash === 'string' ? flash : undefined,
    data: ctx.session.toJSON(),
    store: storeName,
  })
}

// ---- the actions: each is a form POST answered with 303 See Other, back to the page ----
//
// The session cookie is SameSite=Lax (the library's default), so a form on another site cannot
// post here with it. A real app still adds CSRF tokens for older browsers.

async function logIn(ctx: Context): Promise<void> {
  const form = await readForm(ctx)
  const user = (form.get('user') ?? '').trim()
  if (user === '' || user.length > USER_NAME_MAX) {
    ctx.session.flash = `Enter a user name of 1 to ${USER_NAME_MAX} characters.`
    return backToPage(ctx)
  }
  // A new id at the moment of login: an id that someone planted in this browser before (session
  // fixation) no longer leads anywhere. The data so far (views, cart) comes along. login() also
  // enters the new id in the user's index, which is what "Your sessions" lists.
  await ctx.session.login(user)
  // The index knows the user, but the session's data does not: this copy is what the page shows
  // and what tells the routes below whose sessions to list.
  ctx.session.user = user
  backToPage(ctx)
}

async function logOut(ctx: Context): Promise<void> {
  // Unlike `ctx.session = null`, this also takes the session out of the user's index.
  await ctx.session.logout()
  backToPage(ctx)
}

// ---- "Your sessions": the per-user index ----
//
// Other sessions are named on the page by the start of their id only (see `idPrefix`): the whole
// id is what their cookie holds, so printing it would let anyone who sees this page take them
// over. The prefix is looked up again, server-side, among the sessions of the user who is
// logged in here, so a form can never reach another user's session.

async function revokeSession(ctx: Context, sessions: SessionMiddleware): Promise<void> {
  const form = await readForm(ctx)
  const user = currentUser(ctx)
  if (user === undefined) {
    ctx.session.flash = 'Log in to manage your sessions.'
    return backToPage(ctx)
  }
  const prefix = form.get('session') ?? ''
  const mine = await sessions.listByUser(user)
  // This device is never a match here: leaving it is what "Log out" is for.
  const matches = mine.filter((s) => s.id !== ctx.sessionId && idPrefix(s.id) === prefix)
  const target = matches[0]
  // Two sessions sharing a prefix are all but impossible; if it happens, refuse rather than guess.
  if (target === undefined || matches.length > 1) {
    ctx.session.flash = 'That session is not among your other sessions (it may have ended already).'
    return backToPage(ctx)
  }
  // The library ends a user's sessions "all except", so every other listed session of this user
  // is an exception and only the target ends. A session of this user that logs in between the
  // listing and this call is not among the exceptions and ends too: that device logs in again.
  // Either way destroyByUser touches this user's sessions only.
  const keep = mine.map((s) => s.id).filter((id) => id !== target.id)
  const ended = await sessions.destroyByUser(user, { except: keep })
  ctx.session.flash = endedNotice(ended.length)
  backToPage(ctx)
}

async function endOtherSessions(ctx: Context, sessions: SessionMiddleware): Promise<void> {
  const user = currentUser(ctx)
  const here = ctx.sessionId
  if (user === undefined || here === undefined) {
    ctx.session.flash = 'Log in to manage your sessions.'
    return backToPage(ctx)
  }
  const ended = await sessions.destroyByUser(user, { except: here })
  ctx.session.flash = endedNotice(ended.length)
  backToPage(ctx)
}

function endedNotice(count: number): string {
  if (count === 0) return 'No other sessions were active; nothing was ended.'
  return `Ended ${count} other session${count === 1 ? '' : 's'}.`
}

/** The user this session is logged in as (set by `logIn`), if any. */
function currentUser(ctx: Context): string | undefined {
  const user: unknown = ctx.session.user
  return typeof user === 'string' ? user : undefined
}

/** The page's rows: oldest first, with no full ids, only prefixes. */
function describeDevices(list: UserSession[], here: string | undefined): Device[] {
  const time = (date: Date | undefined) => date?.getTime() ?? 0
  return [...list]
    .sort((a, b) => time(a.createdAt) - time(b.createdAt))
    .map((s) => ({
      prefix: idPrefix(s.id),
      thisDevice: s.id === here,
      createdAt: s.createdAt,
      lastSeenAt: s.lastSeenAt,
      expiresAt: s.expiresAt,
    }))
}

async function addToCart(ctx: Context): Promise<void> {
  const form = await readForm(ctx)
  const product = PRODUCTS.find((p) => p.id === form.get('product'))
  if (!product) {
    ctx.session.flash = 'Pick a product from the list.'
    return backToPage(ctx)
  }
  ctx.session.cart ??= { items: [] }
  // A change deep inside a value: the library sees it and writes the key `cart`, nothing else.
  ctx.session.cart.items.push(product.id)
  backToPage(ctx)
}

async function clearCart(ctx: Context): Promise<void> {
  delete ctx.session.cart
  backToPage(ctx)
}

async function click(ctx: Context): Promise<void> {
  // Added in the store, not read-then-written here, so concurrent clicks are all counted.
  await ctx.session.increment('clicks')
  backToPage(ctx)
}

function backToPage(ctx: Context): void {
  ctx.redirect('/')
  // 303, not Koa's default 302: the browser follows with a GET, so reloading the page does not
  // repeat the action.
  ctx.status = 303
}

/** The request's `application/x-www-form-urlencoded` body. */
async function readForm(ctx: Context): Promise<URLSearchParams> {
  if (!ctx.is('application/x-www-form-urlencoded')) ctx.throw(415, 'Expected a form post (application/x-www-form-urlencoded).')
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > FORM_LIMIT_BYTES) ctx.throw(413, 'Form too large.')
    chunks.push(chunk)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}

// ---- running it ----

async function chooseStore(): Promise<{ store: Store | undefined; name: string }> {
  const url = process.env.REDIS_URL
  if (!url) return { store: undefined, name: 'memory' }
  // Imported only here, so the memory store's path never loads a Redis client.
  const { RedisStore } = await import('../../src/stores/redis/index.js')
  return { store: new RedisStore({ url }), name: 'redis' }
}

function portFromEnv(): number {
  const raw = process.env.PORT ?? '3000'
  const port = Number(raw)
  if (!/^\d+$/.test(raw) || port > 65535) throw new Error(`PORT must be a port number from 0 to 65535, got "${raw}"`)
  return port
}

async function main(): Promise<void> {
  const port = portFromEnv()
  const { store, name } = await chooseStore()
  if (!sessionKeys().fromEnv) {
    console.warn('SESSION_KEYS is not set: signing cookies with a fixed key that is for this demo only.')
  }
  const server = createDemoApp(store).listen(port, HOST)
  await once(server, 'listening')
  const { port: actualPort } = server.address() as AddressInfo
  console.log(`koa-atomic-session demo: http://${HOST}:${actualPort} (store: ${name})`)

  const stop = (): void => {
    server.closeAllConnections()
    server.close()
    void store?.close?.()
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

const runDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href
if (runDirectly) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exitCode = 1
  })
}
