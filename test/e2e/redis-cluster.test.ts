/**
 * The whole session behaviour suite (update(), conflicts: 'reject' and the per-user index
 * included) once more through a 3-master Redis Cluster, on both clients.
 */
import { after, before } from 'node:test'
import { Cluster } from 'ioredis'
import { createCluster } from 'redis'
import { RedisStore } from '../../src/stores/redis/index.js'
import { startCluster, type RedisCluster } from '../helpers/redis-server.js'
import { sessionBehaviour } from './behaviour.js'

let cluster: RedisCluster
before(async () => {
  cluster = await startCluster()
})
after(() => cluster?.close())

sessionBehaviour('RedisStore on a Cluster, ioredis', async () => {
  const client = new Cluster(cluster.addresses)
  client.on('error', () => undefined)
  return { store: new RedisStore({ client }), close: async () => void client.disconnect() }
})

sessionBehaviour('RedisStore on a Cluster, node-redis', async () => {
  const rootNodes = cluster.addresses.map(({ host, port }) => ({ url: `redis://${host}:${port}` }))
  const client = await createCluster({ rootNodes }).on('error', () => undefined).connect()
  return { store: new RedisStore({ client }), close: async () => client.destroy() }
})
