/**
 * The lost-update scenario: one session, and in each round two parallel requests that change two
 * different keys (`a` and `b`) to the round's number. The client keeps cookies as a browser does
 * (the response that arrives last sets them), then reads the session back: every key that does
 * not hold the round's number is a lost update.
 */
import { cookieHeader, get, keepCookies, REQUEST_TIMEOUT_MS, type Jar } from './client.js'

export interface RaceResult {
  lost: number
  updates: number
}

export async function race(base: string, loginIndex: number, rounds = 200): Promise<RaceResult> {
  const jar: Jar = new Map()
  await get(base, `/login?i=${loginIndex}`, jar)
  let lost = 0
  for (let round = 1; round <= rounds; round++) {
    const cookie = cookieHeader(jar)
    const change = async (key: string): Promise<void> => {
      const response = await fetch(`${base}/race?k=${key}&v=${round}`, { headers: { cookie }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
      // Kept as each response completes, so the later arrival wins, as in a browser.
      keepCookies(jar, response)
      await response.arrayBuffer()
      if (response.status !== 200) throw new Error(`GET /race answered ${response.status}`)
    }
    await Promise.all([change('a'), change('b')])
    const now = JSON.parse(await get(base, '/peek', jar)) as { a?: unknown; b?: unknown }
    if (now.a !== String(round)) lost++
    if (now.b !== String(round)) lost++
  }
  return { lost, updates: rounds * 2 }
}
