import { assertStorable } from './values.js'

/**
 * Deep change tracking for one request's session. A top-level value that is a plain object or
 * array is handed out wrapped in a Proxy; any write through it, however deep, marks that
 * top-level key as changed (and is checked to be storable), so `s.cart.items.push(x)` is caught.
 * Proxies are cached per object, so `s.cart === s.cart`.
 */
export class Tracker {
  readonly #proxies = new WeakMap<object, object>()
  readonly #raw = new WeakMap<object, object>()
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
        return typeof name === 'string' && Object.hasOwn(target, name) ? this.wrap(key, value) : value
      },
      set: (target, name, value: unknown) => {
        if (typeof name === 'symbol') return false
        const raw = this.unwrap(value)
        assertChild(key, target, name, raw)
        ;(target as Record<string, unknown>)[name] = raw
        this.#onChange(key)
        return true
      },
      deleteProperty: (target, name) => {
        delete (target as Record<string | symbol, unknown>)[name]
        this.#onChange(key)
        return true
      },
      defineProperty: (target, name, descriptor) => {
        if (typeof name === 'symbol' || !('value' in descriptor)) return false
        const raw = this.unwrap(descriptor.value as unknown)
        assertChild(key, target, name, raw)
        Reflect.defineProperty(target, name, { ...descriptor, value: raw })
        this.#onChange(key)
        return true
      },
    }
  }
}

/** Checks a value written inside top-level `key`: arrays refuse holes, objects drop `undefined`. */
function assertChild(key: string, target: object, name: string, value: unknown): void {
  if (Array.isArray(target)) {
    if (name !== 'length') assertStorable(key, value)
  } else {
    assertStorable(key, { [name]: value })
  }
}

function isTrackable(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false
  if (Array.isArray(value)) return true
  const proto = Object.getPrototypeOf(value) as object | null
  return proto === Object.prototype || proto === null
}
