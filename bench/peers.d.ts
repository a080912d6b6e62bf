// The peers that ship no type declarations: only what bench/app.ts uses of them.
declare module 'koa-redis' {
  interface KoaRedisStore {
    get(key: string): Promise<unknown>
    set(key: string, value: unknown, ttlMs?: number): Promise<void>
    destroy(key: string): Promise<void>
  }
  export default function koaRedis(options: { url: string }): KoaRedisStore
}

declare module 'koa-generic-session' {
  import type { Middleware } from 'koa'
  export default function genericSession(options: { store: object }): Middleware
}
