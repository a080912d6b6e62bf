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

/** The session id this client's cookie holds; fails the test when it holds none. */
function idOf(client: Client): string {
  const id = cookieId(client)
  assert.ok(id, 'the client holds a session cookie')
  return id
}

interface Row {
  label: string
  thisDevice: boolean
  created: string
  lastSeen: string
  expires: string
  /** The value the row's Revoke form posts, if it has one. */
  revoke: string | undefined
}

/** The rows of "Your sessions", or `undefined` when the page has no such section. */
function devices(page: Reply): Row[] | undefined {
  const body = /<tbody id="devices">([\s\S]*?)<\/tbody>/.exec(page.body)?.[1]
  if (body === undefined) return undefined
  const rows = [...body.matchAll(/<tr( class="this-device")?>([\s\S]*?)<\/tr>/g)].map(([, current, inner = '']) => {
    const cells = [...inner.matchAll(/<td>([\s\S]*?)<\/td>/g)].map((m) => m[1] ?? '')
    assert.equal(cells.length, 5, `a row has five cells: ${inner}`)
    const [label = '', created = '', lastSeen = '', expires = '', action = ''] = cells
    const revoke = /action="\/sessions\/revoke"><input type="hidden" name="session" value="([^"]*)">/.exec(action)?.[1]
    return { label, thisDevice: current !== undefined, created, lastSeen, expires, revoke }
  })
  assert.equal(shown(page, 'device-count'), String(rows.length))
  return rows
}

/** Checks the page lists exactly these sessions (by id), marking `here` as this device. */
function assertListed(page: Reply, here: string, others: string[]): void {
  const rows = devices(page)
  assert.ok(rows, 'the page shows "Your sessions"')
  assert.equal(rows.length, 1 + others.length)
  const mine = rows.filter((row) => row.thisDevice)
  assert.equal(mine.length, 1, 'exactly one row is marked as this device')
  assert.equal(mine[0]?.label, `${here.slice(0, 8)}… <strong>(this device)</strong>`)
  assert.equal(mine[0]?.revoke, undefined, 'this device has no Revoke button (Log out is for that)')
  const rest = rows.filter((row) => !row.thisDevice)
  assert.deepEqual(rest.map((row) => row.label).sort(), others.map((id) => `${id.slice(0, 8)}…`).sort())
  assert.deepEqual(rest.map((row) => row.revoke).sort(), others.map((id) => id.slice(0, 8)).sort())
  for (const id of [here, ...others]) assert.ok(!page.body.includes(id), 'no whole session id is printed')
  const thirtyDays = 30 * 24 * 60 * 60 * 1000
  for (const row of rows) {
    const [created, lastSeen, expires] = [row.created, row.lastSeen, row.expires].map((text) => new Date(text).getTime())
    assert.ok(created !== undefined && lastSeen !== undefined && expires !== undefined)
    assert.ok(Math.abs(created - Date.now()) < 60_000, `created ${row.created} is not just now`)
    assert.ok(lastSeen >= created, `last seen ${row.lastSeen} is before created ${row.created}`)
    assert.ok(Math.abs(expires - (lastSeen + thirtyDays)) < 60_000, `expiry ${row.expires} is not 30 days after the last write`)
  }
}

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

  it("lists the user's sessions on each device, revokes one, and logs out everywhere else", async () => {
    // Two devices log in as the same user.
    const laptop = new Client(server.url)
    const phone = new Client(server.url)
    await submit(laptop, '/login', { user: 'carol' })
    await submit(phone, '/login', { user: 'carol' })
    const laptopId = idOf(laptop)
    const phoneId = idOf(phone)
    assertListed(await laptop.get('/'), laptopId, [phoneId])
    assertListed(await phone.get('/'), phoneId, [laptopId])

    // The laptop revokes the phone, by the prefix its Revoke button posts.
    const revoke = devices(await laptop.get('/'))?.find((row) => !row.thisDevice)?.revoke
    assert.equal(revoke, phoneId.slice(0, 8))
    const { page: revoked } = await submit(laptop, '/sessions/revoke', { session: revoke })
    assert.equal(shown(revoked, 'flash'), 'Ended 1 other session.')
    assert.equal(shown(revoked, 'user'), 'carol')
    assert.equal(idOf(laptop), laptopId, 'the laptop keeps its session')
    assertListed(revoked, laptopId, [])
    assert.doesNotMatch((await laptop.get('/')).body, /id="flash"/, 'the notice shows once')

    // The phone's next page is a fresh, logged-out session.
    const phonePage = await phone.get('/')
    assert.equal(shown(phonePage, 'is-new'), 'yes')
    assert.doesNotMatch(phonePage.body, /id="user"/)
    assert.equal(devices(phonePage), undefined, 'a logged-out page has no "Your sessions"')
    assert.notEqual(idOf(phone), phoneId)

    // A third device logs in; "Log out everywhere else" on the laptop ends it.
    const tablet = new Client(server.url)
    await submit(tablet, '/login', { user: 'carol' })
    const tabletId = idOf(tablet)
    assertListed(await laptop.get('/'), laptopId, [tabletId])
    const { page: others } = await submit(laptop, '/sessions/others')
    assert.equal(shown(others, 'flash'), 'Ended 1 other session.')
    assert.equal(shown(others, 'user'), 'carol')
    assert.equal(idOf(laptop), laptopId)
    assertListed(others, laptopId, [])

    const tabletPage = await tablet.get('/')
    assert.equal(shown(tabletPage, 'is-new'), 'yes')
    assert.doesNotMatch(tabletPage.body, /id="user"/)
    assert.notEqual(idOf(tablet), tabletId)

    // Nothing left to end: said so, and the laptop is still logged in.
    const { page: none } = await submit(laptop, '/sessions/others')
    assert.equal(shown(none, 'flash'), 'No other sessions were active; nothing was ended.')
    assert.equal(shown(none, 'user'), 'carol')
  })

  it("revokes only the user's own other sessions, and logging out takes a session off the list", async () => {
    const dave = new Client(server.url)
    const erin = new Client(server.url)
    const erinPhone = new Client(server.url)
    await submit(dave, '/login', { user: 'dave' })
    await submit(erin, '/login', { user: 'erin' })
    await submit(erinPhone, '/login', { user: 'erin' })
    const daveId = idOf(dave)
    const erinId = idOf(erin)

    // Another user's session, this device, and a made-up prefix are not Erin's to revoke.
    for (const session of [daveId.slice(0, 8), erinId.slice(0, 8), daveId, 'nothing', '']) {
      const { page } = await submit(erin, '/sessions/revoke', { session })
      assert.match(shown(page, 'flash'), /not among your other sessions/, `revoking "${session}"`)
      assert.equal(shown(page, 'user'), 'erin')
    }
    const davePage = await dave.get('/')
    assert.equal(shown(davePage, 'user'), 'dave', "Dave's session survives")
    assertListed(davePage, daveId, [])
    assertListed(await erin.get('/'), erinId, [idOf(erinPhone)])

    // With three devices, revoking one ends that one only.
    const erinTablet = new Client(server.url)
    await submit(erinTablet, '/login', { user: 'erin' })
    const { page: revoked } = await submit(erin, '/sessions/revoke', { session: idOf(erinTablet).slice(0, 8) })
    assert.equal(shown(revoked, 'flash'), 'Ended 1 other session.')
    assertListed(revoked, erinId, [idOf(erinPhone)])
    assert.equal(shown(await erinPhone.get('/'), 'user'), 'erin', "Erin's phone stays logged in")
    assert.doesNotMatch((await erinTablet.get('/')).body, /id="user"/, "Erin's tablet is logged out")

    // Logging out removes the session from the user's index, so the other device no longer lists it.
    const post = await erinPhone.request('/logout', { method: 'POST', headers: FORM, body: '' })
    assert.equal(post.status, 303)
    assertListed(await erin.get('/'), erinId, [])

    // Logged out, there are no sessions to manage.
    const stranger = new Client(server.url)
    for (const path of ['/sessions/revoke', '/sessions/others']) {
      const { page } = await submit(stranger, path, { session: daveId.slice(0, 8) })
      assert.equal(shown(page, 'flash'), 'Log in to manage your sessions.')
    }
    assert.equal(shown(await dave.get('/'), 'user'), 'dave')
  })

  it('answers 415 to a post that is not a form, and 404 to unknown paths', async () => {
    const client = new Client(server.url)
    const json = await client.request('/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"eve"}' })
    assert.equal(json.status, 415)
    assert.equal((await client.get('/nowhere')).status, 404)
    assert.equal((await client.get('/login')).status, 404)
  })
})
