/**
 * `npm run bench:overhead`: what the middleware itself costs per request on MemoryStore, without
 * sockets, HTTP parsing or a load generator. Koa's request handler is called with Node's own
 * IncomingMessage and ServerResponse objects (a response without a socket keeps what it writes),
 * 16 requests in flight; the CPU time per request is the least of 9 rounds, for bare Koa and with
 * the session middleware, on the same routes and sessions as `npm run bench`.
 *
 * Far steadier than throughput on a shared machine, so it is the yardstick while working on the
 * hot path: run it before and after a change, and under `node --cpu-prof` to see where time goes
 * (`node --cpu-prof --import tsx bench/overhead.ts memory /write`, then bench/top.ts on the file).
 * `npm run bench` stays the measure that counts.
 */
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import Koa, { type Context } from 'koa'
import { sessionData, ROUTES, SESSIONS, type Route } from './contenders.js'

const dist = (path: string): Promise<unknown> => import(new URL(`../dist/esm/${path}`, import.meta.url).href)
const { session, MemoryStore } = (await dist('index.js')) as typeof import('../src/index.js')

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>
type Data = Record<string, unknown> & { counter: number }

const IN_FLIGHT = 16
const REQUESTS = 20_000
const ROUNDS = 12
const WARM_ROUNDS = 3

function handler(withSession: boolean): Handler {
  const app = new Koa()
  app.keys = ['k1', 'k2']
  app.silent = true
  if (withSession) app.use(session({ store: new MemoryStore() }))
  const data = (ctx: Context): Data => (ctx as unknown as { session: Data }).session
  app.use((ctx) => {
    switch (ctx.path) {
      case '/login':
        if (withSession) Object.assign(data(ctx), sessionData(Number(ctx.query.i)))
        ctx.body = 'ok'
        return
      case '/read':
        ctx.body = withSession ? String(data(ctx).counter) : '1'
        return
      case '/write':
        if (withSession) ctx.body = String(++data(ctx).counter)
        else ctx.body = '2'
        return
      default:
        ctx.body = 'ok'
    }
  })
  return app.callback() as unknown as Handler
}

const socket = new Socket()

async function request(handle: Handler, url: string, cookie: string | undefined): Promise<ServerResponse> {
  const req = new IncomingMessage(socket)
  req.method = 'GET'
  req.url = url
  req.headers = cookie === undefined ? { host: 'bench' } : { host: 'bench', cookie }
  const res = new ServerResponse(req)
  await handle(req, res)
  return res
}

/** CPU µs per request on `route`: the least of the timed rounds. */
async function measure(withSession: boolean, route: Route): Promise<number> {
  const handle = handler(withSession)
  const cookies: (string | undefined)[] = []
  for (let i = 0; i < SESSIONS; i++) {
    const res = await request(handle, `/login?i=${i}`, undefined)
    const set = (res.getHeader('set-cookie') as string[] | undefined) ?? []
    cookies.push(set.length > 0 ? set.map((c) => c.split(';')[0]).join('; ') : undefined)
  }
  let best = Infinity
  for (let round = 0; round < ROUNDS; round++) {
    const before = process.cpuUsage()
    let next = 0
    const chain = async (): Promise<void> => {
      while (next < REQUESTS) await request(handle, route, cookies[(next++ * 7919) % SESSIONS])
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, chain))
    const used = process.cpuUsage(before)
    if (round >= WARM_ROUNDS) best = Math.min(best, (used.user + used.system) / REQUESTS)
  }
  return best
}

const [only, onlyRoute] = process.argv.slice(2)
const routes = onlyRoute === undefined ? ROUTES : ROUTES.filter((r) => r === onlyRoute)
console.log('| route | bare Koa µs/req | with session (MemoryStore) µs/req | middleware µs/req |')
console.log('|---|---:|---:|---:|')
for (const route of routes) {
  const bare = only === 'memory' ? NaN : await measure(false, route)
  const ours = only === 'bare' ? NaN : await measure(true, route)
  console.log(`| \`${route}\` | ${bare.toFixed(2)} | ${ours.toFixed(2)} | ${(ours - bare).toFixed(2)} |`)
}
