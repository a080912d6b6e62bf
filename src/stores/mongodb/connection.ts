/**
 * The client MongoStore opens itself when built from `url`. The driver is imported here and only
 * here, on first use, so `koa-atomic-session/mongodb` loads without it for users who pass their
 * own client or collection, and a missing driver fails with install advice instead of at import.
 */
import type { MongoClient, MongoClientOptions } from 'mongodb'

/** Client defaults under the user's: fail server selection within `timeoutMs` unless told otherwise. */
export function defaultsFor(url: string, clientOptions: MongoClientOptions | undefined, timeoutMs: number): MongoClientOptions {
  if (clientOptions?.serverSelectionTimeoutMS !== undefined || /[?&]serverSelectionTimeoutMS=/i.test(url)) return {}
  return { serverSelectionTimeoutMS: timeoutMs }
}

/** A `MongoClient` for `url`; rejects with install advice when the driver is missing. */
export async function openClient(url: string, options: MongoClientOptions): Promise<MongoClient> {
  let driver: { MongoClient: new (url: string, options?: MongoClientOptions) => MongoClient }
  try {
    // A literal specifier, so bundlers see it; imported only here, so the driver stays optional
    // for users who pass their own client or collection (they loaded it themselves).
    const loaded = (await import('mongodb')) as unknown as { MongoClient?: unknown; default?: { MongoClient?: unknown } }
    driver = { MongoClient: (loaded.MongoClient ?? loaded.default?.MongoClient) as typeof driver.MongoClient }
  } catch (cause) {
    throw new Error(
      'MongoStore opens its own connection with the official mongodb driver when given url, and the driver could not be ' +
        'loaded: install it (npm install mongodb), or pass your own client or collection',
      { cause },
    )
  }
  return new driver.MongoClient(url, options)
}
