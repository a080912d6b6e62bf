import type { Store } from '../../src/store.js'

/** Wraps a real store and records which operations reach it, to pin down when the store is used. */
export interface Recording {
  store: Store
  calls: string[]
  /** The patches that reached `apply`, in order. */
  patches: Parameters<Store['apply']>[1][]
  reset(): void
}

export function recording(inner: Store): Recording {
  const calls: string[] = []
  const patches: Parameters<Store['apply']>[1][] = []
  const store: Store = {
    get: (id) => (calls.push('get'), inner.get(id)),
    apply: (id, patch) => (calls.push('apply'), patches.push(patch), inner.apply(id, patch)),
    increment: (id, key, by, ttl) => (calls.push('increment'), inner.increment(id, key, by, ttl)),
    touch: (id, ttl) => (calls.push('touch'), inner.touch(id, ttl)),
    destroy: (id) => (calls.push('destroy'), inner.destroy(id)),
  }
  if (inner.getEncoded) {
    const getEncoded = inner.getEncoded.bind(inner)
    store.getEncoded = (id) => (calls.push('get'), getEncoded(id))
  }
  if (inner.applyIf) {
    const applyIf = inner.applyIf.bind(inner)
    store.applyIf = (id, patch) => (calls.push('applyIf'), applyIf(id, patch))
  }
  return {
    store,
    calls,
    patches,
    reset() {
      calls.length = 0
      patches.length = 0
    },
  }
}

/** A store whose every operation fails, as a store behind a broken network does. */
export function failingStore(message = 'connect ECONNREFUSED 127.0.0.1:6379'): Store {
  const fail = async (): Promise<never> => {
    throw new Error(message)
  }
  return { get: fail, apply: fail, increment: fail, touch: fail, destroy: fail }
}
