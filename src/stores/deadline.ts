/**
 * Runs `start` and settles with it, or rejects with `timeout()` once `ms` have passed, whichever
 * comes first: one timer per store operation, however the client behaves. `late()` turns true once
 * the operation has been reported failed, so a retry or a queued send can stop instead of writing
 * after the fact. `explain` rewords the operation's own errors.
 */
export function withDeadline<T>(
  ms: number,
  timeout: () => Error,
  start: (late: () => boolean) => Promise<T>,
  explain: (error: unknown) => unknown = (error) => error,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false
    const timer = setTimeout(() => {
      settled = true
      reject(timeout())
    }, ms)
    const late = () => settled
    const finish = (settle: () => void) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      settle()
    }
    start(late).then(
      (value) => finish(() => resolve(value)),
      (error: unknown) => finish(() => reject(explain(error))),
    )
  })
}
