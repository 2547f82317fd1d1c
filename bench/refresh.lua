-- POST /v1/auth/refresh spending a distinct, never-used refresh token per request.
--
-- wrk gives each thread its own Lua state, and all connections of a thread share it.
-- run.sh runs wrk with -t1, so this one state hands out the tokens of BENCH_TOKENS in
-- order and no token is ever sent twice. With -tN every thread would read the same file
-- and reuse tokens (grace-window and theft paths instead of rotations): keep -t1.
--
-- When the file runs out, requests carry a token that cannot exist; authgate answers
-- 401, which wrk counts as an error, so an undersized file shows up in the errors column.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local tokens = {}
local count = 0
next_token = 0   -- global so that done() can read it through thread:get()

for line in io.lines(os.getenv("BENCH_TOKENS")) do
  if line ~= "" then
    count = count + 1
    tokens[count] = line
  end
end

local headers = { ["Content-Type"] = "application/json" }

request = function()
  next_token = next_token + 1
  local token = tokens[next_token] or "exhausted-token-file"
  return wrk.format("POST", "/v1/auth/refresh", headers,
    '{"refresh_token":"' .. token .. '"}')
end

local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

done = function(summary, latency, requests)
  local handed = 0
  for _, thread in ipairs(threads) do
    handed = handed + thread:get("next_token")
  end
  bench_report(summary, latency, string.format(" tokens_handed=%d tokens_available=%d", handed, count))
end
