-- Replays "pages": groups of requests, each request sent when the one before it was answered.
-- The file holds one request a line, "METHOD<tab>PATH<tab>TOKEN<tab>BODY" (TOKEN, BODY may be empty;
-- a BODY is sent as JSON), and an empty line after each page's last request; it wraps at the end.
-- Usage: wrk -t1 -s bench/wrk/pages.lua http://host:port -- pages.txt
-- done() prints one JSON line: requests and pages answered, errors (non-2xx/3xx, socket errors, and
-- answers carrying a GraphQL "errors" list), and page latency percentiles in microseconds, from a
-- page's first request written to its last answer read. The latencies mean that only at one
-- connection: with several, a page's requests go out on different connections at once.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } clipdex_timespec;
  int clock_gettime(int clock, clipdex_timespec *now);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("clipdex_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

-- Per thread (wrk gives each its own copy of this script).
local requests = {}
local page_start = {} -- whether requests[i] opens a page
local page_end = {} -- whether requests[i] closes one
local position = 0
local started_at = 0
page_latencies = {}
graphql_errors = 0
pages = 0

function init(args)
  local opening = true
  for line in io.lines(args[1]) do
    if line == "" then
      page_end[#requests] = true
      opening = true
    else
      local method, path, token, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]*)\t?(.*)$")
      local headers = {}
      if token ~= "" then headers["Authorization"] = "Bearer " .. token end
      if body == "" then
        body = nil
      else
        headers["Content-Type"] = "application/json"
      end
      requests[#requests + 1] = wrk.format(method, path, headers, body)
      page_start[#requests] = opening
      opening = false
    end
  end
  page_end[#requests] = true
end

function request()
  position = position % #requests + 1
  if page_start[position] then started_at = now_us() end
  return requests[position]
end

function response(status, headers, body)
  if body and body:find('"errors":[', 1, true) then graphql_errors = graphql_errors + 1 end
  if page_end[position] then
    pages = pages + 1
    page_latencies[#page_latencies + 1] = now_us() - started_at
  end
end

local function percentile(sorted, share)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * share))]
end

function done(summary, _, _)
  local latencies, answered_pages, errors = {}, 0, 0
  for _, thread in ipairs(threads) do
    for _, latency in ipairs(thread:get("page_latencies")) do latencies[#latencies + 1] = latency end
    answered_pages = answered_pages + thread:get("pages")
    errors = errors + thread:get("graphql_errors")
  end
  table.sort(latencies)
  local socket_errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "pages": %d, "duration_us": %d, "non_2xx_3xx": %d, "socket_errors": %d, ' ..
    '"graphql_errors": %d, "page_p50_us": %d, "page_p90_us": %d, "page_p99_us": %d}\n',
    summary.requests, answered_pages, summary.duration, socket_errors.status,
    socket_errors.connect + socket_errors.read + socket_errors.write + socket_errors.timeout,
    errors, percentile(latencies, 0.5), percentile(latencies, 0.9), percentile(latencies, 0.99)))
end
