/**
 * The benchmark's HTTP client side: a cookie jar that behaves as a browser's does for one site
 * (a later Set-Cookie replaces an earlier one; an empty or expired one removes it), logins, and
 * checked GETs.
 */

export type Jar = Map<string, string>

/** No request of the benchmark's own waits longer than this: a stuck app fails the run. */
export const REQUEST_TIMEOUT_MS = 10_000

/** Applies a response's Set-Cookie headers to `jar`, in the order the response lists them. */
export function keepCookies(jar: Jar, response: Response): void {
  for (const header of response.headers.getSetCookie()) {
    const [pair = '', ...attributes] = header.split(';')
    const eq = pair.indexOf('=')
    const name = pair.slice(0, eq).trim()
    const value = pair.slice(eq + 1).trim()
    const expires = attributes.find((a) => a.trim().toLowerCase().startsWith('expires='))
    const expired = expires !== undefined && Date.parse(expires.split('=')[1] ?? '') <= Date.now()
    if (value === '' || expired) jar.delete(name)
    else jar.set(name, value)
  }
}

/** The `Cookie` request header for `jar`. */
export function cookieHeader(jar: Jar): string {
  return [...jar].map(([name, value]) => `${name}=${value}`).join('; ')
}

/** GETs `path` with the jar's cookies, keeps the cookies it sends back, and returns its body. */
export async function get(base: string, path: string, jar: Jar): Promise<string> {
  const response = await fetch(base + path, { headers: { cookie: cookieHeader(jar) }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
  keepCookies(jar, response)
  const body = await response.text()
  if (response.status !== 200) throw new Error(`GET ${path} answered ${response.status}: ${body.slice(0, 200)}`)
  return body
}

/** Logs in seeded sessions 0…count-1, `parallel` at a time; returns each one's jar. */
export async function loginAll(base: string, count: number, parallel = 8): Promise<Jar[]> {
  const jars: Jar[] = new Array(count)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++
      const jar: Jar = new Map()
      await get(base, `/login?i=${i}`, jar)
      if (jar.size === 0) throw new Error(`GET /login?i=${i} sent no cookie`)
      jars[i] = jar
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  return jars
}
