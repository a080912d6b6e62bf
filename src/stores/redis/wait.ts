/**
 * What RedisStore needs to have a write confirmed by replicas (option `waitReplicas`).
 *
 * `WAIT n ms` blocks the connection that sends it until `n` replicas have acknowledged everything
 * that connection has written so far, or `ms` pass, and answers how many did. So it only means
 * something right after the write, on the same connection, to the node that took the write:
 * - not inside the MULTI: there Redis does not block, and answers for the offset before the
 *   transaction, so it can report replicas that never saw the write;
 * - not inside a Lua script: Redis refuses WAIT in scripts;
 * - on Cluster, not as a separate keyless command: a cluster client would send it to any node, or
 *   to every node. The write and its WAIT travel as one pipeline to the node serving the key, and
 *   when that node answers MOVED or ASK, the whole pipeline goes to the node named.
 * Pipelined, they still cost one round trip.
 */

/** WAIT's arguments: how many replicas must confirm a write, and how long Redis waits for them. */
export interface Wait {
  readonly replicas: number
  readonly timeoutMs: number
}

/** apply's MULTI (HSET, HDEL, PEXPIRE) as raw commands, for an adapter's `confirm`. */
export function transactionCommands(key: string, fields: string[], removed: string[], ttlMs: number): string[][] {
  const commands = [['MULTI']]
  if (fields.length > 0) commands.push(['HSET', key, ...fields])
  if (removed.length > 0) commands.push(['HDEL', key, ...removed])
  commands.push(['PEXPIRE', key, String(ttlMs)], ['EXEC'])
  return commands
}

/** The operator's message for a write that too few replicas confirmed. */
export function notConfirmed(command: string, confirmed: number, wait: Wait): string {
  const replicas = `${wait.replicas} replica${wait.replicas === 1 ? '' : 's'}`
  return (
    `${command} was written on the master but confirmed by ${confirmed} of ${replicas} within ${wait.timeoutMs} ms ` +
    '(option waitReplicas), so it is not reported as saved; it may or may not survive a failover'
  )
}

/** A Cluster redirection in an error reply: `MOVED <slot> <host:port>` or `ASK <slot> <host:port>`. */
export function redirectionOf(error: unknown): { ask: boolean; address: string } | undefined {
  if (!(error instanceof Error)) return undefined
  const match = /^(MOVED|ASK) \d+ (\S+)/.exec(error.message)
  return match ? { ask: match[1] === 'ASK', address: match[2] as string } : undefined
}
