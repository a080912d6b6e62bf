-- wrk script: every request carries the cookies of one of the logged-in sessions, picked at
-- random. Usage: wrk ... -s bench/wrk.lua URL -- <file of Cookie header values, one per line>
-- [comma-separated paths: each request then also picks one of them (a mixed warm-up)]
-- At the end it prints one JSON line, the summary bench/run.ts reads.

local requests = {}

function init(args)
  -- Requests are formatted once per thread: formatting per request would make the load
  -- generator, not the app, the bottleneck.
  local paths = {}
  for path in string.gmatch(args[2] or "", "[^,]+") do paths[#paths + 1] = path end
  if #paths == 0 then paths[1] = wrk.path end
  for line in io.lines(args[1]) do
    if line ~= "" then
      for _, path in ipairs(paths) do
        requests[#requests + 1] = wrk.format(nil, path, { Cookie = line })
      end
    end
  end
  if #requests == 0 then error("no cookies in " .. tostring(args[1])) end
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function request()
  return requests[math.random(#requests)]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"p99Us":%d,"p50Us":%d,"errors":%d,"non2xx":%d}\n',
    summary.requests, summary.duration, latency:percentile(99), latency:percentile(50),
    e.connect + e.read + e.write + e.timeout, e.status))
end
