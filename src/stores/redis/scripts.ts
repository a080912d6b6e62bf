import { createHash } from 'node:crypto'

/** A Lua script and its SHA1, so adapters send EVALSHA and fall back to EVAL on NOSCRIPT. */
export interface Script {
  readonly source: string
  readonly sha: string
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') }
}

/**
 * Both scripts touch only KEYS[1], the session's hash, so they run on Redis Cluster, and both set
 * the expiry in the same atomic step as the write: no hash is ever left without a TTL.
 *
 * HSET and HDEL take many fields at once; the writes go in chunks of 1000 arguments so that
 * `unpack` stays within Lua's C stack limit however many keys a patch holds.
 */
const WRITE = `
local function chunked(command, first, last)
  local i = first
  while i <= last do
    local stop = math.min(i + 999, last)
    redis.call(command, KEYS[1], unpack(ARGV, i, stop))
    i = stop + 1
  end
end
`

/**
 * The conditional write (`applyIf`). ARGV: ttlMs, number of expected fields, number of fields to
 * set, then (field, encoded value) per expected field, where an empty string means "absent" and
 * a NUL "present, any value" (no JSON encoding is empty or starts with NUL), then (field, encoded
 * value) per field to set, then the fields to remove.
 * Returns 1 when it wrote, 0 when an expected field differed (and then it wrote nothing).
 */
export const APPLY_IF = script(`${WRITE}
local i = 4
for _ = 1, tonumber(ARGV[2]) do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local expected = ARGV[i + 1]
  if expected == '' then
    if current then return 0 end
  elseif expected == '\0' then
    if not current then return 0 end
  elseif current ~= expected then
    return 0
  end
  i = i + 2
end
local sets = i + tonumber(ARGV[3]) * 2 - 1
chunked('HSET', i, sets)
chunked('HDEL', sets + 1, #ARGV)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

/** The error codes the increment script answers with: the field holds no number; the sum would not be finite. */
export const NOT_A_NUMBER = 'NOTNUMBER'
export const NOT_FINITE = 'NOTFINITE'

/**
 * Adds to one field and resets the expiry. ARGV: field, increment, ttlMs, '1' when the increment
 * is a safe integer. An integer added to an integer field uses HINCRBY (exact 64-bit arithmetic);
 * anything else, including an integer added to a field that holds a float, uses HINCRBYFLOAT, as
 * does an HINCRBY that would overflow. A field that holds no number (a JSON string, boolean,
 * object…), and a sum past what a double holds (HINCRBYFLOAT's long double would take it, JSON
 * not), are refused before anything is written, expiry included.
 */
export const INCREMENT = script(`
local field, by = ARGV[1], ARGV[2]
local current = redis.call('HGET', KEYS[1], field)
if current and not tonumber(current) then
  return redis.error_reply('${NOT_A_NUMBER} the field does not hold a number')
end
local next = tonumber(current or '0') + tonumber(by)
if next ~= next or next == math.huge or next == -math.huge then
  return redis.error_reply('${NOT_FINITE} the sum would not be a finite number')
end
local sum
if ARGV[4] == '1' and (not current or string.find(current, '^%-?%d+$')) then
  sum = redis.pcall('HINCRBY', KEYS[1], field, by)
  if type(sum) == 'table' then sum = nil end
end
if sum == nil then sum = redis.call('HINCRBYFLOAT', KEYS[1], field, by) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return sum
`)
