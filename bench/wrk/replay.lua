-- Replays a file of requests, one per line: "METHOD PATH [BEARER_TOKEN]", in order, wrapping at the end.
-- Usage: wrk -s bench/wrk/replay.lua http://host:port -- requests.txt
-- done() prints one JSON line with the count, errors and latency percentiles (microseconds); it runs
-- apart from the threads' init(), so it knows nothing of the file (bench/api.py counts its lines).

local requests = {}
local position = 0

function init(args)
  for line in io.lines(args[1]) do
    local method, path, token = line:match("^(%S+) (%S+) ?(%S*)$")
    local headers = {}
    local body = nil
    if token ~= nil and token ~= "" then headers["Authorization"] = "Bearer " .. token end
    if method == "POST" then body = "" end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx_3xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
