/**
 * Clicks through the demo app (examples/demo/server.ts) the way a person would in a browser:
 * every action is a form POST answered with 303, followed by a GET of the page.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createDemoApp } from '../../examples/demo/server.js'
import { MemoryStore, type Patch } from '../../src/index.js'
import { Client, listen, type Reply, type Running } from '../helpers/http.js'

/**
 * The MemoryStore answers within one turn of the event loop, so concurrent requests would never
 * interleave and a lost update could not show. A few milliseconds per call, as over a network,
 * let them overlap as they would on Redis.
 */
class SlowStore extends MemoryStore {
  override async get(id: string): Promise<Record<string, unknown> | undefined> {
    await sleep(3)
    return super.get(id)
  }
  override async apply(id: string, patch: Patch): Promise<void> {
    await sleep(3)
    return super.apply(id, patch)
  }
  override async increment(id: string, key: string, by: number, ttlMs: number): Promise<number> {
    await sleep(3)
    return super.increment(id, key, by, ttlMs)
  }
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

/** Submits a form, checks the answer is "303, back to the page", and loads the page. */
async function submit(client: Client, path: string, fields: Record<string, string> = {}): Promise<{ post: Reply; page: Reply }> {
  const post = await client.request(path, { method: 'POST', headers: FORM, body: new URLSearchParams(fields).toString() })
  assert.equal(post.status, 303, `POST ${path} answered ${post.status}: ${post.body}`)
  assert.equal(post.headers.get('location'), '/')
  const page = await client.get('/')
  assert.equal(page.status, 200)
  return { post, page }
}

/** The text of the element with this id (the page marks every fact it shows with one). */
function shown(page: Reply, id: string): string {
  const match = new RegExp(`id="${id}">([^<]*)<`).exec(page.body)
  assert.ok(match, `the page shows no #${id}`)
  return match[1] ?? ''
}

function sessionData(page: Reply): Record<string, unknown> {
  const json = /<pre id="data">([^<]*)<\/pre>/.exec(page.body)?.[1]
  assert.ok(json !== undefined, 'the page shows no session data')
  const unescaped = json.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#39;/g, "'").replace(/&amp;/g, '&')
  return JSON.parse(unescaped) as Record<string, unknown>
}

const cookieId = (client: Client): string | undefined => client.jar.get('koa.sid')

describe('demo app', () => {
  let server: Running
  before(async () => {
    server = await listen(createDemoApp(new SlowStore()))
  })
  after(async () => {
    await server.close()
  })

  it('renders the page for a first visit, with a new session', async () => {
    const client = new Client(server.url)
    const page = await client.get('/')
    assert.equal(page.status, 200)
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
    assert.equal(page.headers.get('cache-control'), 'no-store')
    assert.match(page.body, /^<!doctype html>/)

    const id = cookieId(client)
    assert.ok(id, 'the first visit sets the session cookie')
    assert.equal(shown(page, 'session-id'), `${id.slice(0, 8)}…`)
    assert.ok(!page.body.includes(id), 'the page does not print the whole id')
    assert.equal(shown(page, 'is-new'), 'yes')
    const expires = new Date(shown(page, 'expires')).getTime()
    const thirtyDays = 30 * 24 * 60 * 60 * 1000
    assert.ok(Math.abs(expires - (Date.now() + thirtyDays)) < 60_000, `expiry ${shown(page, 'expires')} is not 30 days ahead`)
    assert.deepEqual(sessionData(page), { views: 1 })
  })

  it('counts page views in one session', async () => {
    const client = new Client(server.url)
    const first = await client.get('/')
    const id = cookieId(client)
    const second = await client.get('/')
    const third = await client.get('/')
    assert.deepEqual([first, second, third].map((page) => shown(page, 'views')), ['1', '2', '3'])
    assert.deepEqual([first, second, third].map((page) => shown(page, 'is-new')), ['yes', 'no', 'no'])
    assert.equal(cookieId(client), id)
  })

  it('logs in under a new session id, keeping the data, and the old id leads nowhere', async () => {
    const client = new Client(server.url)
    await client.get('/')
    const before = cookieId(client)
    const beforeJar = new Map(client.jar)
    assert.ok(before)

    const { post, page } = await submit(client, '/login', { user: 'ann' })
    const after = cookieId(client)
    assert.ok(after)
    assert.notEqual(after, before)
    assert.ok(post.setCookies.some((line) => line.startsWith(`koa.sid=${after};`)), 'the login answer sends the new id')
    assert.equal(shown(page, 'user'), 'ann')
    assert.equal(shown(page, 'session-id'), `${after.slice(0, 8)}…`)
    assert.deepEqual(sessionData(page), { views: 2, user: 'ann' })

    // Someone holding the pre-login cookie (session fixation) gets a fresh, anonymous session.
    const planted = new Client(server.url)
    for (const [name, value] of beforeJar) planted.jar.set(name, value)
    const theirs = await planted.get('/')
    assert.equal(shown(theirs, 'is-new'), 'yes')
    assert.doesNotMatch(theirs.body, /id="user"/)
    assert.notEqual(cookieId(planted), before)
    assert.notEqual(cookieId(planted), after)
  })

  it('escapes the user name, and refuses an empty one with a notice', async () => {
    const client = new Client(server.url)
    const { page: refused } = await submit(client, '/login', { user: '   ' })
    assert.match(shown(refused, 'flash'), /Enter a user name/)
    assert.doesNotMatch(refused.body, /id="user"/)
    const next = await client.get('/')
    assert.doesNotMatch(next.body, /id="flash"/, 'the notice shows once')

    const { page } = await submit(client, '/login', { user: `<script>alert('x')</script>&` })
    assert.equal(shown(page, 'user'), '&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;')
    assert.doesNotMatch(page.body, /<script>/)
    assert.equal(sessionData(page).user, `<script>alert('x')</script>&`)
  })

  it('adds to the cart through a nested change, and clears it', async () => {
    const client = new Client(server.url)
    await submit(client, '/cart/add', { product: 'tea' })
    const { page } = await submit(client, '/cart/add', { product: 'mug' })
    assert.equal(shown(page, 'cart-count'), '2')
    assert.match(page.body, /<ul id="cart"><li>Green tea<\/li><li>Enamel mug<\/li><\/ul>/)
    assert.deepEqual(sessionData(page).cart, { items: ['tea', 'mug'] })

    const { page: unknown } = await submit(client, '/cart/add', { product: 'piano' })
    assert.match(shown(unknown, 'flash'), /Pick a product/)
    assert.equal(shown(unknown, 'cart-count'), '2')

    const { page: cleared } = await submit(client, '/cart/clear')
    assert.equal(shown(cleared, 'cart-count'), '0')
    assert.equal(sessionData(cleared).cart, undefined)
  })

  it('counts clicks atomically, concurrent ones included', async () => {
    const client = new Client(server.url)
    await submit(client, '/click')
    const { page } = await submit(client, '/click')
    assert.equal(shown(page, 'clicks'), '2')

    // Five clicks at once in the same session, as from five tabs: none is lost.
    const clicks = Array.from({ length: 5 }, () => client.request('/click', { method: 'POST', headers: FORM, body: '' }))
    for (const reply of await Promise.all(clicks)) assert.equal(reply.status, 303)
    const after = await client.get('/')
    assert.equal(shown(after, 'clicks'), '7')
    assert.equal(sessionData(after).clicks, 7)
  })

  it('logs out: clears the cookie, and the next page is a fresh session', async () => {
    const client = new Client(server.url)
    await submit(client, '/login', { user: 'bob' })
    await submit(client, '/cart/add', { product: 'socks' })
    const loggedIn = cookieId(client)
    assert.ok(loggedIn)

    const post = await client.request('/logout', { method: 'POST', headers: FORM, body: '' })
    assert.equal(post.status, 303)
    const cleared = post.setCookies.find((line) => line.startsWith('koa.sid='))
    assert.ok(cleared, 'logout sends the session cookie')
    assert.match(cleared, /^koa\.sid=;.*expires=Thu, 01 Jan 1970/i)
    assert.equal(cookieId(client), undefined)

    const page = await client.get('/')
    assert.equal(shown(page, 'is-new'), 'yes')
    assert.doesNotMatch(page.body, /id="user"/)
    assert.equal(shown(page, 'cart-count'), '0')
    assert.deepEqual(sessionData(page), { views: 1 })
    assert.notEqual(cookieId(client), loggedIn)
  })

  it('answers 415 to a post that is not a form, and 404 to unknown paths', async () => {
    const client = new Client(server.url)
    const json = await client.request('/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"eve"}' })
    assert.equal(json.status, 415)
    assert.equal((await client.get('/nowhere')).status, 404)
    assert.equal((await client.get('/login')).status, 404)
  })
})
