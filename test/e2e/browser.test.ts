/**
 * A real browser: headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) clicks
 * through the demo app: count, add to cart, log in, log out. It checks what only a browser can:
 * the session cookie is invisible to `document.cookie` (HttpOnly), logging in changes the id the
 * browser holds, and logging out clears it. A screenshot of the page is kept in test/artifacts/.
 *
 * When Chromium is missing or cannot start, this test fails and says so: it never skips.
 * `CHROMIUM_PATH` points it at another Chromium binary.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, describe, it } from 'node:test'
import { chromium, type BrowserContext, type Page, type Response } from 'playwright-core'
import { createDemoApp } from '../../examples/demo/server.js'
import { MemoryStore } from '../../src/index.js'
import { listen, type Running } from '../helpers/http.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
]
const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))

/** A fresh profile in a new directory; fails with what to do when Chromium is absent or will not start. */
async function launch(): Promise<{ context: BrowserContext; profile: string }> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}. Install it (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH. This test needs a real browser and does not skip.`)
  }
  const profile = await mkdtemp(join(tmpdir(), 'koa-atomic-session-chromium-'))
  try {
    const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 })
    return { context, profile }
  } catch (error) {
    await rm(profile, { recursive: true, force: true })
    throw new Error(`Chromium at ${CHROMIUM} could not start: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
  }
}

/** Clicks a form's button and waits for the POST's answer (303) and the page it leads back to. */
async function submit(page: Page, form: string): Promise<Response> {
  const [post] = await Promise.all([
    page.waitForResponse((response) => response.request().method() === 'POST' && new URL(response.url()).pathname === form),
    page.waitForNavigation({ waitUntil: 'load' }),
    page.click(`form[action="${form}"] button`),
  ])
  assert.equal(post.status(), 303, `POST ${form} answered ${post.status()}`)
  return post
}

/** What a script on the page sees in document.cookie (an expression: tsconfig has no DOM types). */
const scriptCookies = (page: Page): Promise<string> => page.evaluate<string>('document.cookie')

const text = async (page: Page, selector: string): Promise<string> => ((await page.textContent(selector)) ?? '').trim()

describe('the demo in headless Chromium', () => {
  let server: Running | undefined
  let browser: { context: BrowserContext; profile: string } | undefined
  after(async () => {
    await browser?.context.close()
    if (browser) await rm(browser.profile, { recursive: true, force: true })
    await server?.close()
  })

  it('counts, fills a cart, logs in with a new id and out with the cookie cleared; the cookie stays out of document.cookie', { timeout: 60_000 }, async (t) => {
    const store = new MemoryStore()
    server = await listen(createDemoApp(store))
    browser = await launch()
    const { context } = browser
    const page = context.pages()[0] ?? (await context.newPage())
    const sessionCookie = async () => (await context.cookies(server?.url)).find((cookie) => cookie.name === 'koa.sid')

    // First visit: a session, and its cookies are HttpOnly and SameSite=Lax.
    const first = await page.goto(server.url)
    assert.equal(first?.status(), 200)
    const cookies = await context.cookies(server.url)
    assert.deepEqual(cookies.map((cookie) => cookie.name).sort(), ['koa.sid', 'koa.sid.sig'])
    for (const cookie of cookies) {
      assert.equal(cookie.httpOnly, true, `${cookie.name} is not HttpOnly`)
      assert.equal(cookie.sameSite, 'Lax')
    }
    const guestId = (await sessionCookie())?.value as string
    assert.equal(await scriptCookies(page), '', 'a script can read the session cookie')
    assert.equal(await text(page, '#session-id'), `${guestId.slice(0, 8)}…`)

    // Count twice (an atomic increment in the store) and add a product to the cart.
    await submit(page, '/click')
    await submit(page, '/click')
    assert.equal(await text(page, '#clicks'), '2')
    await page.selectOption('select[name="product"]', 'mug')
    await submit(page, '/cart/add')
    assert.equal(await text(page, '#cart-count'), '1')
    assert.equal(await text(page, '#cart li'), 'Enamel mug')
    assert.equal((await sessionCookie())?.value, guestId, 'the id changed without a login')

    // Log in: a new id in the browser, the old one gone from the store, the data carried over.
    await page.fill('input[name="user"]', 'ann')
    await submit(page, '/login')
    assert.equal(await text(page, '#user'), 'ann')
    const userId = (await sessionCookie())?.value as string
    assert.ok(userId && userId !== guestId, 'logging in did not change the id')
    assert.equal(await store.get(`koa:sess:${guestId}`), undefined, 'the id from before the login still exists')
    assert.equal(await text(page, '#cart-count'), '1')
    assert.equal(await text(page, '#clicks'), '2')
    assert.equal(await scriptCookies(page), '')

    await mkdir(ARTIFACTS, { recursive: true })
    const screenshot = join(ARTIFACTS, 'demo-logged-in.png')
    await page.screenshot({ path: screenshot, fullPage: true })
    assert.ok((await stat(screenshot)).size > 1_000)

    // Log out: the answer clears the cookie; the page that follows starts a new guest session.
    const logout = await submit(page, '/logout')
    const cleared = (await logout.headersArray()).filter((header) => header.name.toLowerCase() === 'set-cookie').map((header) => header.value)
    assert.ok(cleared.some((line) => /^koa\.sid=;.*expires=Thu, 01 Jan 1970/i.test(line)), `the logout did not clear the cookie: ${cleared.join(' | ')}`)
    assert.equal(await page.locator('#user').count(), 0)
    assert.equal(await text(page, '#cart-count'), '0')
    const afterId = (await sessionCookie())?.value
    assert.notEqual(afterId, userId, 'the browser still holds the logged-in id')
    assert.equal(await store.get(`koa:sess:${userId}`), undefined, 'the logged-in session still exists')
    assert.equal(await scriptCookies(page), '')
    t.diagnostic(`Chromium ${context.browser()?.version() ?? '(version unknown)'}; ids: guest ${guestId.slice(0, 6)}…, logged in ${userId.slice(0, 6)}…, after logout ${afterId?.slice(0, 6) ?? '(none)'}…; screenshot ${screenshot}`)
  })
})
