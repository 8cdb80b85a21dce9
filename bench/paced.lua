-- bench/paced.lua: each connection waits PACE_MS milliseconds (2 by default)
-- after an answer before it sends its next request. With 50 connections that
-- is at most 25,000 requests/s, less than either server can serve, so both get
-- the same load and the latencies are the servers' own, not a queue's.
local pace = tonumber(os.getenv("PACE_MS") or "2")

function delay()
    return pace
end
