import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SessionValueError } from '../src/errors.js'
import { Tracker } from '../src/tracking.js'

function tracked<T>(key: string, value: T): { view: T; changed: string[] } {
  const changed: string[] = []
  const tracker = new Tracker((k) => changed.push(k))
  return { view: tracker.wrap(key, value) as T, changed }
}

describe('Tracker', () => {
  it('marks the top-level key when anything inside it changes', () => {
    const { view, changed } = tracked('cart', { items: [{ qty: 1 }], meta: {} as Record<string, unknown> })
    view.items[0]!.qty = 2
    view.items.push({ qty: 3 })
    delete view.meta.x
    Object.defineProperty(view.meta, 'y', { value: 1, enumerable: true, writable: true, configurable: true })
    assert.ok(changed.length >= 4)
    assert.deepEqual(new Set(changed), new Set(['cart']))
  })

  it('does not mark anything on reads', () => {
    const { view, changed } = tracked('cart', { items: [1, 2, 3] })
    void view.items.length
    void view.items.map((n) => n * 2)
    void JSON.stringify(view)
    assert.deepEqual(changed, [])
  })

  it('hands out the same proxy for the same object', () => {
    const { view } = tracked('cart', { items: [] as number[] })
    assert.equal(view.items, view.items)
  })

  it('refuses unstorable values written deep inside, naming the top-level key', () => {
    const { view, changed } = tracked('cart', { items: [] as unknown[], meta: {} as Record<string, unknown> })
    assert.throws(() => view.items.push(() => 1), SessionValueError)
    assert.throws(() => (view.meta.when = new Map()), /Session key "cart"/)
    assert.throws(() => (view.meta.__proto__ = {}), /pollute prototypes/)
    assert.deepEqual(changed, [])
  })

  it('refuses a write that would leave a hole in an array, naming the path, and changes nothing', () => {
    const { view, changed } = tracked('cart', { list: [1] })
    assert.throws(() => (view.list[3] = 4), /Session key "cart": at cart\.list\[3\]: .*hole/)
    assert.throws(() => (view.list.length = 3), /Session key "cart": at cart\.list: .*hole/)
    assert.throws(() => delete view.list[0], /Session key "cart": at cart\.list\[0\]: .*hole/)
    assert.throws(() => Object.defineProperty(view.list, '2', { value: 1, enumerable: true, writable: true, configurable: true }), SessionValueError)
    assert.deepEqual(view.list, [1])
    assert.deepEqual(changed, [])
  })

  it("hands out no prototype: a path set with a client-chosen '__proto__' or 'constructor' pollutes nothing", () => {
    const { view } = tracked('prefs', { theme: { dark: true }, list: [1] })
    const prefs = view as unknown as Record<string, Record<string, unknown>>
    assert.equal(prefs.theme?.['__proto__'], undefined)
    assert.equal(prefs.theme?.['constructor'], undefined)
    assert.equal((view.list as unknown as Record<string, unknown>)['constructor'], undefined)
    assert.throws(() => ((prefs.theme?.['__proto__'] as Record<string, unknown>).polluted = 'yes'), TypeError)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
    // Arrays still work as arrays (their methods read constructor for the kind of array to make).
    assert.deepEqual(view.list.map((n: number) => n * 2), [2])
  })

  it('refuses a named property on an array, which JSON would drop', () => {
    const { view, changed } = tracked('cart', { list: [1] })
    assert.throws(() => ((view.list as unknown as Record<string, unknown>).note = 'x'), /Session key "cart": at cart\.list\[note\]: an array holds only items/)
    assert.deepEqual(changed, [])
  })

  it('lets array methods move items (they pass through holes of their own making) and shrink arrays', () => {
    const { view } = tracked('cart', { list: [1, 2] })
    view.list.unshift(7, 8)
    view.list.splice(1, 0, 5, 6)
    view.list.shift()
    view.list.pop()
    view.list[view.list.length] = 9
    assert.deepEqual(view.list, [5, 6, 8, 1, 9])
    view.list.length = 1
    assert.deepEqual(view.list, [5])
  })

  it('refuses a write that would make a cycle, naming the path, and writes nothing', () => {
    const raw = { a: {} as Record<string, unknown>, arr: [[]] as unknown[][] }
    const { view, changed } = tracked('obj', raw)
    assert.throws(() => (view.a.self = view), /Session key "obj": at obj\.a\.self: the value is cyclic/)
    assert.throws(() => (view.a.back = view.a), /at obj\.a\.back: the value is cyclic/)
    assert.throws(() => view.arr[0]!.push(view.arr), /at obj\.arr\[0\]\[0\]: the value is cyclic/)
    // The ancestor inside a new object, as a tracking proxy.
    assert.throws(() => (view.a.deep = { list: [view] }), /at obj\.a\.deep\.list\[0\]: the value is cyclic/)
    assert.throws(() => Object.defineProperty(view.a, 'x', { value: view, enumerable: true, writable: true, configurable: true }), SessionValueError)
    assert.equal(JSON.stringify(raw), '{"a":{},"arr":[[]]}')
    assert.deepEqual(changed, [])
  })

  it('refuses a cycle through an object shared by two paths, and lets shared acyclic data be', () => {
    const { view } = tracked('obj', { a: { n: 1 } as Record<string, unknown>, b: {} as Record<string, unknown> })
    view.b.shared = view.a
    view.b.data = { copy: [view.a, view.a] }
    assert.throws(() => ((view.b.shared as Record<string, unknown>).self = view.b), /at obj\.b\.shared\.self: the value is cyclic/)
    assert.throws(() => (view.a.loop = view.b), /the value is cyclic/)
    assert.equal(JSON.stringify(view), '{"a":{"n":1},"b":{"shared":{"n":1},"data":{"copy":[{"n":1},{"n":1}]}}}')
  })

  it('stores plain data, not proxies, when a tracked object is assigned elsewhere', () => {
    const changed: string[] = []
    const tracker = new Tracker((k) => changed.push(k))
    const inner = { a: 1 }
    const view = tracker.wrap('x', { inner }) as { inner: { a: number } }
    assert.equal(tracker.unwrap(view.inner), inner)
  })

  it('leaves primitives, Dates and class instances untracked', () => {
    const tracker = new Tracker(() => {})
    const date = new Date()
    assert.equal(tracker.wrap('k', date), date)
    assert.equal(tracker.wrap('k', 5), 5)
  })
})
