/**
 * The client-side ledger of the failover suites: what each session was told was saved, and the
 * check that Redis holds it. A 503 means "not confirmed", not "not written", so a change that
 * failed may be in Redis all the same; only a change answered 2xx must be.
 */

/** One session's acknowledged changes. */
export interface Ledger {
  id: string
  /** Keys written once each, with the value acknowledged. */
  writes: Map<string, string>
  /** Counts that acknowledged increments returned. */
  counts: number[]
  /** Sequence numbers that acknowledged updates appended to `seqs`. */
  seqs: number[]
  /** Set when a destroy of this session was acknowledged. */
  destroyed: boolean
  /**
   * Set when a destroy was sent, whatever the answer: a 503 means "not confirmed", not "not
   * written", so the session may be gone even though the destroy failed.
   */
  destroySent: boolean
}

/** A copy of every ledger as it stands now: the changes acknowledged so far. */
export function snapshot(perApp: Ledger[][]): Ledger[][] {
  return perApp.map((ledgers) =>
    ledgers.map((ledger) => ({ ...ledger, writes: new Map(ledger.writes), counts: [...ledger.counts], seqs: [...ledger.seqs] })),
  )
}

export interface Checked {
  acknowledged: number
  lost: number
  examples: string[]
  /** Sessions gone after a destroy that answered 503: applied though not confirmed. */
  unconfirmedDestroys: number
}

/**
 * Checks every acknowledged change of `ledgers` against what Redis holds now (`read` returns a
 * session's hash, field → JSON text, or undefined to leave that session out). A lost change is: a write whose value is not there, an
 * update whose number is missing from its list, an increment the stored count falls short of,
 * a destroy after which the session still holds acknowledged data. A session that is gone after
 * a destroy answered 503 is not counted: that destroy was applied, just not confirmed.
 */
export async function checkLedgers(ledgers: Ledger[], read: (key: string) => Promise<Record<string, string> | undefined>): Promise<Checked> {
  const result: Checked = { acknowledged: 0, lost: 0, examples: [], unconfirmedDestroys: 0 }
  const lose = (count: number, example: string): void => {
    result.lost += count
    if (result.examples.length < 5) result.examples.push(example)
  }
  for (const ledger of ledgers) {
    const stored = await read(`koa:sess:${ledger.id}`)
    if (stored === undefined) continue // not checked here
    const value = (field: string): unknown => (stored[field] === undefined ? undefined : JSON.parse(stored[field] as string))
    const acknowledged = ledger.writes.size + ledger.counts.length + ledger.seqs.length
    result.acknowledged += acknowledged + (ledger.destroyed ? 1 : 0)
    if (ledger.destroyed) {
      const back = [...ledger.writes.keys()].filter((key) => stored[key] !== undefined)
      if (back.length > 0) lose(1, `${ledger.id}: destroyed, but Redis holds ${back.length} of its acknowledged keys again`)
      continue
    }
    // A destroy that failed (unconfirmed) may still have removed the session: not a loss.
    if (ledger.destroySent && Object.keys(stored).length === 0) {
      result.unconfirmedDestroys++
      continue
    }
    for (const [key, expected] of ledger.writes) {
      if (value(key) !== expected) lose(1, `${ledger.id}: ${key}=${expected} acknowledged, Redis holds ${String(value(key))}`)
    }
    const n = (value('n') as number | undefined) ?? 0
    if (n < ledger.counts.length) lose(ledger.counts.length - n, `${ledger.id}: ${ledger.counts.length} increments acknowledged, Redis holds n=${n}`)
    const seqs = new Set((value('seqs') as number[] | undefined) ?? [])
    const missing = ledger.seqs.filter((seq) => !seqs.has(seq))
    if (missing.length > 0) lose(missing.length, `${ledger.id}: updates ${missing.slice(0, 3).join(', ')} acknowledged, missing from seqs`)
  }
  return result
}
