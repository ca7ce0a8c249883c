-- wrk script for `manage.py bench_load --client wrk`: the collectors of loadtest.py
-- (locust), from wrk's C event loop. Each connection is a collector polling token status the
-- way mint.js does: a GET with the ETag of the copy held in If-None-Match (304 while nothing
-- changed), then a pause after each answer, 1.5 s on average (uniform 0.75..2.25 s, so that the
-- 200 connections wrk opens at once spread out after their first round).
--
--   wrk -t2 -c200 -d60s -s devtools/load/loadtest.lua URL -- SLUG FIRST COUNT THREADS RESULTS
--
-- Thread i polls tokens FIRST + (i + k * THREADS) mod COUNT, k = 0, 1, ...; an ETag is kept
-- per token (the token id is read from each 200's document). At the end, RESULTS gets one JSON
-- object: requests, codes, socket errors, seconds, and latency percentiles in milliseconds
-- from wrk's own histogram.

local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  slug, first, count, nthreads = args[1], tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  results = args[5]
  etags, polled, codes = {}, 0, {}
  math.randomseed(os.time() + index)
end

function request()
  local token = first + (index + polled * nthreads) % count
  polled = polled + 1
  local headers = { Accept = "application/json" }
  if etags[token] then
    headers["If-None-Match"] = etags[token]
  end
  return wrk.format("GET", "/api/collections/" .. slug .. "/tokens/" .. token .. "/", headers)
end

function response(status, headers, body)
  local key = tostring(status)
  codes[key] = (codes[key] or 0) + 1
  if status == 200 then
    local id = tonumber(string.match(body, '"token_id"%s*:%s*(%d+)'))
    if id then
      etags[id] = headers["ETag"] or headers["etag"]
    end
  end
end

function delay()
  return math.random(750, 2250)
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("codes")) do
      merged[key] = (merged[key] or 0) + n
    end
  end
  local parts = {}
  for key, n in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', key, n))
  end
  local e = summary.errors
  local out = io.open(threads[1]:get("results"), "w")
  out:write(string.format(
    '{"requests": %d, "seconds": %.3f, "codes": {%s}, "socket_errors": %d, '
      .. '"p50": %.3f, "p95": %.3f, "p99": %.3f, "max": %.3f}\n',
    summary.requests, summary.duration / 1e6, table.concat(parts, ", "),
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000
  ))
  out:close()
end
