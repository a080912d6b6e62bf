/**
 * The Store contract, as one suite every store runs: `storeContract('MemoryStore', factory)`.
 * A factory returns a fresh, empty store and a `close` to call after the suite.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { SessionValueError } from '../../src/errors.js'
import { PRESENT, type Store } from '../../src/store.js'

export interface ContractStore {
  store: Store
  close?: () => Promise<void>
}

export interface ContractOptions {
  /**
   * Whether concurrent writes to one session are atomic. Only read-modify-write adapters
   * (fromWholeObjectStore) say false; they run every other test, and their own test file shows
   * what they lose instead.
   */
  atomic?: boolean
  /** Whether the store offers the conditional write `applyIf`. Default true. */
  conditional?: boolean
  /** Whether an increment past what a double holds is refused before it is written. Default true. */
  finiteIncrement?: boolean
}

const MINUTE = 60_000

export function storeContract(name: string, open: () => Promise<ContractStore>, options: ContractOptions = {}): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store
    let close: (() => Promise<void>) | undefined
    const fresh = () => `contract:${randomUUID()}`

    before(async () => {
      ;({ store, close } = await open())
    })
    after(async () => {
      await close?.()
    })

    it('reads an unknown id as undefined', async () => {
      assert.equal(await store.get(fresh()), undefined)
    })

    it('writes keys and reads them back exactly', async () => {
      const id = fresh()
      const values = {
        text: 'grüße, 世界 "quoted" \\ \n',
        int: 42,
        float: -1.5e-7,
        yes: true,
        nothing: null,
        list: [1, 'two', { three: [3] }],
        nested: { a: { b: { c: 'deep' } }, empty: {} },
      }
      await store.apply(id, { set: values, ttlMs: MINUTE })
      assert.deepEqual({ ...(await store.get(id)) }, values)
    })

    it('removes unset keys and leaves every other key as it was', async () => {
      const id = fresh()
      await store.apply(id, { set: { a: 1, b: 2, c: 3 }, ttlMs: MINUTE })
      await store.apply(id, { set: { a: 10 }, unset: ['b'], ttlMs: MINUTE })
      assert.deepEqual({ ...(await store.get(id)) }, { a: 10, c: 3 })
    })

    it('keeps sessions apart', async () => {
      const [one, two] = [fresh(), fresh()]
      await store.apply(one, { set: { who: 'one' }, ttlMs: MINUTE })
      await store.apply(two, { set: { who: 'two' }, ttlMs: MINUTE })
      assert.equal((await store.get(one))?.who, 'one')
      assert.equal((await store.get(two))?.who, 'two')
    })

    it('hands out copies: changing what get returned changes nothing stored', async () => {
      const id = fresh()
      await store.apply(id, { set: { cart: { items: [1] } }, ttlMs: MINUTE })
      const first = (await store.get(id)) as { cart: { items: number[] } }
      first.cart.items.push(2)
      assert.deepEqual((await store.get(id))?.cart, { items: [1] })
    })

    it('returns data that cannot pollute prototypes', async () => {
      const id = fresh()
      const hostile = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"bad": 1}}, "ok": 1}')
      await store.apply(id, { set: { hostile }, ttlMs: MINUTE })
      const record = (await store.get(id)) as { hostile: Record<string, unknown> }
      assert.deepEqual(Object.keys(record.hostile), ['ok'])
      assert.equal(({} as Record<string, unknown>).polluted, undefined)
      assert.equal(Object.getPrototypeOf(record.hostile), Object.prototype)
    })

    it('expires a session ttlMs after its last write', async () => {
      const id = fresh()
      await store.apply(id, { set: { a: 1 }, ttlMs: 150 })
      assert.ok(await store.get(id))
      await sleep(250)
      assert.equal(await store.get(id), undefined)
    })

    it('starts from nothing when a write arrives after expiry: old keys do not come back', async () => {
      const id = fresh()
      await store.apply(id, { set: { a: 1, b: 2 }, ttlMs: 100 })
      await sleep(200)
      await store.apply(id, { set: { c: 3 }, ttlMs: MINUTE })
      assert.deepEqual({ ...(await store.get(id)) }, { c: 3 })
    })

    it('extends the expiry with touch, and touch never creates a session', async () => {
      const id = fresh()
      await store.apply(id, { set: { a: 1 }, ttlMs: 200 })
      await store.touch(id, MINUTE)
      await sleep(300)
      assert.deepEqual({ ...(await store.get(id)) }, { a: 1 })
      const missing = fresh()
      await store.touch(missing, MINUTE)
      assert.equal(await store.get(missing), undefined)
    })

    it('destroys a session, and destroying a missing one is fine', async () => {
      const id = fresh()
      await store.apply(id, { set: { a: 1 }, ttlMs: MINUTE })
      await store.destroy(id)
      assert.equal(await store.get(id), undefined)
      await store.destroy(fresh())
    })

    it('increments: an absent key counts as 0, floats and negatives add, the sum is returned', async () => {
      const id = fresh()
      assert.equal(await store.increment(id, 'n', 5, MINUTE), 5)
      assert.equal(await store.increment(id, 'n', -2, MINUTE), 3)
      assert.equal(await store.increment(id, 'f', 0.5, MINUTE), 0.5)
      assert.equal(await store.increment(id, 'f', 0.25, MINUTE), 0.75)
      assert.deepEqual({ ...(await store.get(id)) }, { n: 3, f: 0.75 })
    })

    it('refuses to increment a key that holds something other than a number', async () => {
      const id = fresh()
      await store.apply(id, { set: { name: 'ann' }, ttlMs: MINUTE })
      await assert.rejects(store.increment(id, 'name', 1, MINUTE), SessionValueError)
      assert.equal((await store.get(id))?.name, 'ann')
    })

    if (options.finiteIncrement !== false) {
      it('refuses an increment whose sum would not be a finite number, and writes nothing', async () => {
        const id = fresh()
        await store.apply(id, { set: { n: Number.MAX_VALUE }, ttlMs: MINUTE })
        await assert.rejects(store.increment(id, 'n', Number.MAX_VALUE, MINUTE), /Session key "n": cannot increment: the sum would not be a finite number/)
        await assert.rejects(store.increment(id, 'n', -Infinity, MINUTE), SessionValueError)
        assert.equal((await store.get(id))?.n, Number.MAX_VALUE)
      })
    }

    it('sets the expiry when incrementing', async () => {
      const id = fresh()
      await store.increment(id, 'n', 1, 150)
      await sleep(250)
      assert.equal(await store.get(id), undefined)
    })

    if (options.atomic !== false) {
      it('loses nothing when many patches to different keys of one session run at once', async () => {
        const id = fresh()
        await store.apply(id, { set: { base: true }, ttlMs: MINUTE })
        await Promise.all(Array.from({ length: 50 }, (_, i) => store.apply(id, { set: { [`k${i}`]: i }, ttlMs: MINUTE })))
        const record = await store.get(id)
        assert.equal(Object.keys(record ?? {}).length, 51)
        for (let i = 0; i < 50; i++) assert.equal(record?.[`k${i}`], i)
      })

      it('adds up increments that run at once', async () => {
        const id = fresh()
        await Promise.all(Array.from({ length: 100 }, () => store.increment(id, 'n', 1, MINUTE)))
        assert.equal((await store.get(id))?.n, 100)
      })
    }

    if (options.conditional === false) {
      it('offers no conditional write, so nothing can rely on one', () => {
        assert.equal(store.applyIf, undefined)
      })
    } else {
      describe('conditional write (applyIf)', () => {
        it('writes when every expected key still holds its value, and not otherwise', async () => {
          const id = fresh()
          await store.apply(id, { set: { cart: [1], other: 'x' }, ttlMs: MINUTE })
          assert.equal(await store.applyIf!(id, { set: { cart: [1, 2] }, expect: { cart: [1] }, ttlMs: MINUTE }), true)
          assert.equal(await store.applyIf!(id, { set: { cart: [9] }, expect: { cart: [1] }, ttlMs: MINUTE }), false)
          assert.deepEqual({ ...(await store.get(id)) }, { cart: [1, 2], other: 'x' })
        })

        it('treats an expected undefined as "absent"', async () => {
          const id = fresh()
          assert.equal(await store.applyIf!(id, { set: { a: 1 }, expect: { a: undefined }, ttlMs: MINUTE }), true)
          assert.equal(await store.applyIf!(id, { set: { a: 2 }, expect: { a: undefined }, ttlMs: MINUTE }), false)
          assert.equal(await store.applyIf!(id, { unset: ['a'], expect: { a: 1 }, ttlMs: MINUTE }), true)
          assert.equal((await store.get(id))?.a, undefined)
        })

        it('treats an expected PRESENT as "holds anything", and a missing session holds nothing', async () => {
          const id = fresh()
          assert.equal(await store.applyIf!(id, { set: { a: 1 }, expect: { $e: PRESENT }, ttlMs: MINUTE }), false)
          assert.equal(await store.get(id), undefined)
          await store.apply(id, { set: { $e: 5 }, ttlMs: MINUTE })
          assert.equal(await store.applyIf!(id, { set: { a: 1 }, expect: { $e: PRESENT, u: undefined }, ttlMs: MINUTE }), true)
          assert.equal(await store.applyIf!(id, { set: { a: 2 }, expect: { b: PRESENT }, ttlMs: MINUTE }), false)
          assert.deepEqual({ ...(await store.get(id)) }, { $e: 5, a: 1 })
        })

        it('lets exactly one of many racing writers with the same expectation win', async () => {
          const id = fresh()
          await store.apply(id, { set: { v: 0 }, ttlMs: MINUTE })
          const results = await Promise.all(
            Array.from({ length: 20 }, (_, i) => store.applyIf!(id, { set: { v: i + 1 }, expect: { v: 0 }, ttlMs: MINUTE })),
          )
          assert.equal(results.filter(Boolean).length, 1)
        })
      })
    }
  })
}
