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
