-- wrk script for bench/random_ids.sh: every request names a sandbox id never
-- seen before (Host <port>-<id>.<domain>), the way a scanner or an attacker
-- would, so every request misses the proxy's route cache.
--
--   wrk -t2 -c32 -d600s -s bench/random_ids.lua URL -- PORT DOMAIN PER_THREAD DONE_FILE
--
-- Each thread stops after PER_THREAD responses (a few more may be in flight
-- on its other connections) and appends a line to DONE_FILE: wrk's main
-- thread sleeps for the whole -d regardless, so the caller sends it SIGINT
-- once DONE_FILE has a line per thread. done() prints the statuses seen.

local threads = {}
local next_tid = 0

function setup(thread)
    thread:set("tid", next_tid)
    next_tid = next_tid + 1
    table.insert(threads, thread)
end

local prefix, suffix, limit, done_file
local sent, seen = 0, 0
statuses = {}

function init(args)
    prefix = args[1] .. "-"
    suffix = "." .. args[2]
    limit = tonumber(args[3])
    done_file = args[4]
    -- Distinct seeds per thread and per run: ids must not repeat.
    math.randomseed(os.time() * 131 + tid * 7919 + math.floor(os.clock() * 1e6))
end

function request()
    sent = sent + 1
    -- 20 characters of [0-9a-f]: 2 random 31-bit numbers and a counter.
    local id = string.format("r%08x%08x%03x", math.random(0, 0x7fffffff),
                             math.random(0, 0x7fffffff), sent % 4096)
    wrk.headers["Host"] = prefix .. id .. suffix
    return wrk.format()
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    seen = seen + 1
    if seen == limit then
        local f = io.open(done_file, "a")
        f:write("done\n")
        f:close()
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for status, n in pairs(t:get("statuses")) do
            total[status] = (total[status] or 0) + n
        end
    end
    local parts = {}
    for status, n in pairs(total) do
        table.insert(parts, status .. "=" .. n)
    end
    table.sort(parts)
    io.write("statuses: " .. table.concat(parts, " ") .. "\n")
end
