import { assertStorable, assertStorableAt, fail, PROTOTYPE_KEYS } from './values.js'

/** Where a nested object sits: the object holding it, and under which name. */
interface Place {
  parent: object
  name: string
}

/**
 * How many `MOVERS` are running. They are synchronous and run no user code, so one count serves
 * every tracker.
 */
let moving = 0

/**
 * Array methods that pass through holes of their own making: `unshift(a, b)` and `splice` first
 * write past the end, `pop`, `shift` and `splice` delete an item before shrinking the array. Each
 * is handed out wrapped, so that the traps let holes pass while it runs.
 */
const MOVERS: ReadonlyMap<unknown, unknown> = new Map(
  [Array.prototype.pop, Array.prototype.shift, Array.prototype.splice, Array.prototype.unshift].map((method) => [method, mover(method)]),
)

function mover(method: Function): (this: unknown, ...args: unknown[]) => unknown {
  return function (this: unknown, ...args: unknown[]): unknown {
    moving++
    try {
      return Reflect.apply(method, this, args)
    } finally {
      moving--
    }
  }
}

/**
 * Deep change tracking for one request's session. A top-level value that is a plain object or
 * array is handed out wrapped in a Proxy; any write through it, however deep, marks that
 * top-level key as changed (and is checked to be storable), so `s.cart.items.push(x)` is caught.
 * Proxies are cached per object, so `s.cart === s.cart`.
 */
export class Tracker {
  readonly #proxies = new WeakMap<object, object>()
  readonly #raw = new WeakMap<object, object>()
  /**
   * Each nested object's place, as the traps last saw it read or written: a write of an object
   * walks up from its target to name its path and to know the objects that would contain it.
   */
  readonly #places = new WeakMap<object, Place>()
  readonly #onChange: (key: string) => void

  constructor(onChange: (key: string) => void) {
    this.#onChange = onChange
  }

  /** `value` as the user should see it under top-level `key`. */
  wrap(key: string, value: unknown): unknown {
    if (!isTrackable(value)) return value
    const cached = this.#proxies.get(value)
    if (cached) return cached
    const proxy = new Proxy(value, this.#handler(key))
    this.#proxies.set(value, proxy)
    this.#raw.set(proxy, value)
    return proxy
  }

  /** The plain object behind a tracking proxy, so assigning one elsewhere stores data, not a proxy. */
  unwrap<T>(value: T): T {
    return typeof value === 'object' && value !== null ? ((this.#raw.get(value) as T | undefined) ?? value) : value
  }

  #handler(key: string): ProxyHandler<object> {
    return {
      get: (target, name, receiver) => {
        const value: unknown = Reflect.get(target, name, receiver)
        if (typeof name !== 'string') return value
        // Session data is plain: its prototype is not handed out, or `s.prefs[a][b] = v` with a
        // client-chosen `a` of '__proto__' would write into Object.prototype.
        if (PROTOTYPE_KEYS.has(name)) return undefined
        if (!Object.hasOwn(target, name)) return (Array.isArray(target) && MOVERS.get(value)) || value
        if (isTrackable(value)) this.#place(value, target, name)
        return this.wrap(key, value)
      },
      set: (target, name, value: unknown) => {
        if (typeof name === 'symbol') return false
        const raw = this.unwrap(value)
        this.#assertChild(key, target, name, raw)
        ;(target as Record<string, unknown>)[name] = raw
        if (isTrackable(raw)) this.#place(raw, target, name)
        this.#onChange(key)
        return true
      },
      deleteProperty: (target, name) => {
        if (Array.isArray(target) && moving === 0 && typeof name === 'string' && isIndex(name) && Number(name) < target.length) {
          fail(key, this.#locate(key, target, name).path, 'deleting an item would leave a hole in the array, which JSON turns into null; use splice()')
        }
        delete (target as Record<string | symbol, unknown>)[name]
        this.#onChange(key)
        return true
      },
      defineProperty: (target, name, descriptor) => {
        if (typeof name === 'symbol' || !('value' in descriptor)) return false
        const raw = this.unwrap(descriptor.value as unknown)
        this.#assertChild(key, target, name, raw)
        Reflect.defineProperty(target, name, { ...descriptor, value: raw })
        if (isTrackable(raw)) this.#place(raw, target, name)
        this.#onChange(key)
        return true
      },
    }
  }

  /**
   * Checks `value` written as `name` of `target`, inside top-level `key`: arrays refuse holes,
   * objects drop `undefined`, and nothing may contain `target` or an object around it (a cycle).
   */
  #assertChild(key: string, target: object, name: string, value: unknown): void {
    if (Array.isArray(target)) {
      // A write past the end, or a longer length, leaves holes; array methods fill theirs.
      if (name === 'length') {
        if (moving === 0 && Number(value) > target.length) {
          fail(key, this.#locate(key, target).path, `a length of ${String(value)} would leave a hole in the array (${items(target)}), which JSON turns into null`)
        }
        return
      }
      if (!isIndex(name)) {
        fail(key, this.#locate(key, target, name).path, `an array holds only items: JSON would drop a property named "${name}"`)
      }
      if (moving === 0 && Number(name) > target.length) {
        fail(key, this.#locate(key, target, name).path, `writing here would leave a hole in the array (${items(target)}), which JSON turns into null`)
      }
    } else {
      if (PROTOTYPE_KEYS.has(name)) fail(key, this.#locate(key, target, name).path, 'this key is refused: it could pollute prototypes')
      if (value === undefined) return
    }
    if (typeof value !== 'object' || value === null) {
      // A primitive cannot make a cycle: it is checked alone, and the path is worked out only for the error.
      try {
        assertStorable(key, value)
      } catch {
        assertStorableAt(key, value, this.#locate(key, target, name).path, [])
      }
      return
    }
    const { path, ancestors } = this.#locate(key, target, name)
    assertStorableAt(key, value, path, ancestors)
  }

  /**
   * Where `target` (or its child `name`) sits inside top-level `key`: the path, and the objects from
   * the top-level value down to `target`, each with its proxy (a new value may hold either). The
   * walk stops, marking the path partial, at a place gone stale (its object was deleted there, or
   * moved by a write that bypassed the traps); `target` alone still catches every cycle, as a value
   * that would close one must lead to it.
   */
  #locate(key: string, target: object, name?: string): { path: string; ancestors: object[] } {
    let path = name === undefined ? '' : step(target, name)
    const ancestors: object[] = []
    for (let node = target; ; ) {
      ancestors.push(node)
      const proxy = this.#proxies.get(node)
      if (proxy) ancestors.push(proxy)
      const place = this.#places.get(node)
      if (place === undefined) break
      if ((place.parent as Record<string, unknown>)[place.name] !== node || ancestors.includes(place.parent)) {
        path = `…${path}`
        break
      }
      path = step(place.parent, place.name) + path
      node = place.parent
    }
    return { path: key + path, ancestors }
  }

  #place(child: object, parent: object, name: string): void {
    const place = this.#places.get(child)
    if (place?.parent !== parent || place.name !== name) this.#places.set(child, { parent, name })
  }
}

/** One step of a path, as `assertStorable` writes it: `[3]` into an array, `.name` into an object. */
function step(parent: object, name: string): string {
  return Array.isArray(parent) ? `[${name}]` : `.${name}`
}

function items(array: unknown[]): string {
  return array.length === 1 ? 'it has 1 item' : `it has ${array.length} items`
}

function isIndex(name: string): boolean {
  return String(Number(name) >>> 0) === name
}

function isTrackable(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false
  if (Array.isArray(value)) return true
  const proto = Object.getPrototypeOf(value) as object | null
  return proto === Object.prototype || proto === null
}
