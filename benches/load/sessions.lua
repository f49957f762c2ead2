-- wrk script: GET BENCH_PATH with a different credential per request, taken
-- round-robin from the file BENCH_TOKENS, in header BENCH_HEADER with
-- BENCH_PREFIX before the token (e.g. "Authorization" + "Bearer ").
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local path = os.getenv("BENCH_PATH") or "/user/me"
local header = os.getenv("BENCH_HEADER") or "Authorization"
local prefix = os.getenv("BENCH_PREFIX") or "Bearer "
local i = 0

request = function()
  i = i + 1
  return wrk.format("GET", path, { [header] = prefix .. tokens[(i % #tokens) + 1] })
end
