-- POST /v1/auth/password/forgot for one address (static request): BENCH_EMAIL.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

wrk.method = "POST"
wrk.path = "/v1/auth/password/forgot"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"email":"%s"}', os.getenv("BENCH_EMAIL"))
