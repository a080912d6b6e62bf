/**
 * Whole requests through a real Koa server on MongoStore: the shared session behaviour suite on a
 * real MongoDB server when env MONGODB_URL names one (skipped with the reason otherwise), and
 * always on the in-memory imitation of a collection, which exercises the store's control flow in
 * whole requests but is NOT MongoDB (see test/helpers/mongo-imitation.ts).
 */
import { describe, it } from 'node:test'
import { MongoStore } from '../../src/stores/mongodb/index.js'
import { imitationBackend, MONGODB_URL, realBackend, REAL_SERVER_SKIP, type MongoBackend } from '../helpers/mongo-backends.js'
import { sessionBehaviour } from './behaviour.js'

/** A store on a fresh collection of `backend`, with its TTL index; closing it closes the backend. */
async function open(backend: MongoBackend) {
  const { collection } = await backend.collection()
  const store = new MongoStore({ collection })
  await store.ensureIndex()
  return { store, close: () => backend.close() }
}

sessionBehaviour(`MongoStore on ${imitationBackend().label}`, () => open(imitationBackend()))

describe('MongoStore on a real MongoDB server (MONGODB_URL)', { skip: REAL_SERVER_SKIP }, () => {
  sessionBehaviour('MongoStore on the MongoDB server at MONGODB_URL', async () => open(await realBackend(MONGODB_URL as string)))
})

// A skipped suite is not counted among skipped tests by node:test's summary; this line is.
if (REAL_SERVER_SKIP) it('session behaviour on a real MongoDB server', { skip: REAL_SERVER_SKIP }, () => {})
