import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import Koa from 'koa'

/** A Koa app listening on a free loopback port; `close()` stops it. */
export interface Running {
  app: Koa
  url: string
  close(): Promise<void>
}

export async function listen(app: Koa): Promise<Running> {
  const server: Server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((error) => (error ? reject(error) : resolve()))
      }),
  }
}

/** Builds an app with `app.keys` set and errors kept quiet (tests assert on them instead). */
export function koaApp(App: typeof Koa = Koa): Koa {
  const app = new App()
  app.keys = ['test-key-newest', 'test-key-older']
  app.silent = true
  return app
}

export interface Reply {
  status: number
  body: string
  json: unknown
  headers: Headers
  setCookies: string[]
}

/**
 * A client that keeps cookies the way a browser does (by name; an expired or empty one is
 * dropped), so whole-request tests read like a user's visits.
 */
export class Client {
  readonly jar = new Map<string, string>()
  constructor(readonly base: string) {}

  get cookieHeader(): string {
    return [...this.jar].map(([name, value]) => `${name}=${value}`).join('; ')
  }

  async request(path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...init.headers }
    if (this.jar.size > 0 && headers.cookie === undefined) headers.cookie = this.cookieHeader
    // Redirects are not followed: a test sees the 3xx and its cookies, then follows like a browser.
    const response = await fetch(this.base + path, { method: init.method ?? 'GET', headers, body: init.body ?? null, redirect: 'manual' })
    const body = await response.text()
    const setCookies = response.headers.getSetCookie()
    for (const line of setCookies) this.#keep(line)
    let json: unknown
    try {
      json = JSON.parse(body)
    } catch {
      json = undefined
    }
    return { status: response.status, body, json, headers: response.headers, setCookies }
  }

  get(path: string, headers?: Record<string, string>): Promise<Reply> {
    return this.request(path, headers ? { headers } : {})
  }

  #keep(line: string): void {
    const [pair = '', ...attributes] = line.split(';')
    const index = pair.indexOf('=')
    const name = pair.slice(0, index).trim()
    const value = pair.slice(index + 1).trim()
    const expires = attributes.map((a) => a.trim()).find((a) => a.toLowerCase().startsWith('expires='))
    const expired = expires !== undefined && new Date(expires.slice(8)).getTime() <= Date.now()
    if (value === '' || expired) this.jar.delete(name)
    else this.jar.set(name, value)
  }
}
