import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseDuration } from '../src/duration.js'

describe('parseDuration', () => {
  it('reads human durations', () => {
    assert.equal(parseDuration('30 days'), 30 * 86_400_000)
    assert.equal(parseDuration('1 month'), 30 * 86_400_000)
    assert.equal(parseDuration('2h'), 7_200_000)
    assert.equal(parseDuration('1.5 hours'), 5_400_000)
    assert.equal(parseDuration('90s'), 90_000)
    assert.equal(parseDuration('10 Minutes'), 600_000)
    assert.equal(parseDuration('1 week'), 7 * 86_400_000)
    assert.equal(parseDuration('1y'), 365 * 86_400_000)
    assert.equal(parseDuration('250ms'), 250)
  })

  it('takes numbers and bare number strings as milliseconds', () => {
    assert.equal(parseDuration(5000), 5000)
    assert.equal(parseDuration('5000'), 5000)
  })

  it('returns undefined for what it cannot read', () => {
    for (const bad of ['', 'soon', '1 fortnight', '-1h', '0', 0, -5, Number.NaN, Infinity, null, undefined, {}, '1h30m']) {
      assert.equal(parseDuration(bad), undefined, `${String(bad)} should not parse`)
    }
  })
})
