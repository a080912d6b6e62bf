import { MemoryStore } from '../../src/index.js'
import { sessionBehaviour } from './behaviour.js'

sessionBehaviour('MemoryStore', async () => ({ store: new MemoryStore() }))
