-- wrk script for bench/failover.sh: one line per request, so what clients saw
-- can be cut per second around a Redis failover.
--
--   wrk -tN -cN -d70s --timeout 10s -s bench/failover.lua URL -- \
--       ROLE ORIGIN_PORT DOMAIN COUNT DELAY_MS OUT_DIR N
--
-- Run with as many connections as threads (-tN -cN): each thread then has
-- one connection, so request() and response() alternate and the time
-- between them is that request's latency. A request() while one is still
-- outstanding means the connection failed (wrk reconnects and asks again):
-- the outstanding one is logged as a socket error.
--
-- ROLE "warm": sandboxes w0 .. w<COUNT-1>, cycled (cached in the proxy once
-- asked). ROLE "uncached": a new sandbox every request, u<k> with k = seq *
-- N + thread id (N: the -t given), for k < COUNT (the records exist in Redis, nobody
-- asked for them before); past COUNT ids repeat and the log says so.
-- ROLE "origin" (the control run straight to the origin) is logged as warm
-- is. DELAY_MS paces each connection (wrk's delay()), 0 = as fast as it goes.
--
-- OUT_DIR/<role>-<thread>.log gets "start_ms latency_us status retry_after"
-- per request (start in ms since the epoch, CLOCK_REALTIME, the clock of
-- bench/failover.py's events; status "E" for a socket error; retry_after 1
-- when the response had a Retry-After header). done() writes requests still
-- outstanding at the end to OUT_DIR/<role>-unfinished.log.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } failover_ts;
int clock_gettime(int clk, failover_ts *ts);
]]
local ts = ffi.new("failover_ts")
local function now_ms()
    ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME
    return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
local nthreads = 0

function setup(thread)
    thread:set("tid", nthreads)
    nthreads = nthreads + 1
    table.insert(threads, thread)
end

local role, prefix, suffix, count, pause, out, nthr
local seq = 0
pending = 0 -- start (ms) of the request in flight, 0 = none
wrapped = 0
local last_flush = 0

function init(args)
    role = args[1]
    role_name = role -- a global: done() reads it
    prefix = args[2] .. "-"
    suffix = "." .. args[3]
    count = tonumber(args[4])
    pause = tonumber(args[5])
    out = io.open(args[6] .. "/" .. role .. "-" .. tid .. ".log", "w")
    out_dir = args[6] -- read by done(), in wrk's main Lua state
    nthr = tonumber(args[7])
end

function delay()
    return pause
end

local verified = false

function request()
    local t = now_ms()
    -- wrk calls thread 0's request() once before starting it, to check the
    -- request parses: that one is never sent.
    local probe = tid == 0 and not verified
    verified = true
    if pending ~= 0 then
        out:write(string.format("%.3f %d E 0\n", pending, (t - pending) * 1e3))
    end
    local id
    if role ~= "uncached" then
        id = "w" .. ((seq + tid) % count)
    else
        local k = seq * nthr + tid
        if k >= count then
            wrapped = wrapped + 1
            k = k % count
        end
        id = "u" .. k
    end
    seq = seq + 1
    wrk.headers["Host"] = prefix .. id .. suffix
    pending = probe and 0 or now_ms()
    return wrk.format()
end

function response(status, headers, body)
    local t = now_ms()
    local ra = (headers["Retry-After"] or headers["retry-after"]) and 1 or 0
    out:write(string.format("%.3f %d %d %d\n", pending, (t - pending) * 1e3, status, ra))
    pending = 0
    if t - last_flush > 500 then
        out:flush()
        last_flush = t
    end
end

function done(summary, latency, requests)
    local first = threads[1]
    local f = io.open(first:get("out_dir") .. "/" .. first:get("role_name") .. "-unfinished.log", "w")
    local w = 0
    for _, t in ipairs(threads) do
        local p = t:get("pending")
        if p ~= 0 then
            f:write(string.format("%.3f\n", p))
        end
        w = w + t:get("wrapped")
    end
    f:close()
    io.write(string.format("%s: %d requests, socket errors connect %d read %d write %d timeout %d;" ..
        " ids reused %d\n", first:get("role_name"), summary.requests, summary.errors.connect, summary.errors.read,
        summary.errors.write, summary.errors.timeout, w))
end
