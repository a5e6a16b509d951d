-- wrk script of scripts/bench.sh for POST /items: every request creates one
-- item. The bearer token comes from the environment (BENCH_TOKEN), never
-- from the command line.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local token = os.getenv("BENCH_TOKEN")
if token == nil or token == "" then
   error("post-item.lua: BENCH_TOKEN is not set")
end

wrk.method = "POST"
wrk.body = '{"name":"bench item","description":"written by scripts/bench.sh"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
