// The whole behaviour suite again on Koa 2 (the last 2.x), which the package also supports.
import Koa2 from 'koa2'
import { MemoryStore } from '../../src/index.js'
import { sessionBehaviour } from './behaviour.js'

sessionBehaviour('MemoryStore, Koa 2', async () => ({ store: new MemoryStore() }), Koa2)
