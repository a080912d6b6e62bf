/** A lifetime: milliseconds, or a human string such as `'30 days'`, `'1 month'`, `'2h'`, `'90s'`. */
export type Duration = number | string

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

// A month is 30 days and a year 365: sessions need round, predictable lifetimes, not calendars.
const UNITS: Record<string, number> = {
  ms: 1, msec: 1, msecs: 1, millisecond: 1, milliseconds: 1,
  s: SECOND, sec: SECOND, secs: SECOND, second: SECOND, seconds: SECOND,
  m: MINUTE, min: MINUTE, mins: MINUTE, minute: MINUTE, minutes: MINUTE,
  h: HOUR, hr: HOUR, hrs: HOUR, hour: HOUR, hours: HOUR,
  d: DAY, day: DAY, days: DAY,
  w: 7 * DAY, wk: 7 * DAY, wks: 7 * DAY, week: 7 * DAY, weeks: 7 * DAY,
  mo: 30 * DAY, month: 30 * DAY, months: 30 * DAY,
  y: 365 * DAY, yr: 365 * DAY, yrs: 365 * DAY, year: 365 * DAY, years: 365 * DAY,
}

const PATTERN = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)$/

/**
 * Milliseconds for a duration, or `undefined` when it cannot be read. A bare number string
 * (`'5000'`) is milliseconds, like a number.
 */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : undefined
  if (typeof value !== 'string') return undefined
  const match = PATTERN.exec(value.trim().toLowerCase())
  if (!match) return undefined
  const unit = match[2] === '' ? 1 : UNITS[match[2] as string]
  if (unit === undefined) return undefined
  const ms = Math.round(Number(match[1]) * unit)
  return ms > 0 ? ms : undefined
}
