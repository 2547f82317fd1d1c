-- Shared by every wrk run of bench/run.sh: after the run, print one machine-readable
-- line that run.sh parses instead of wrk's human output (whose units vary: us/ms/s).
-- Loaded by the other scripts with dofile(); wrk runs done() in its main Lua state.

function bench_report(summary, latency, extra)
  local errors = summary.errors
  local socket = errors.connect + errors.read + errors.write + errors.timeout
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d%s\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    errors.status, socket, extra or ""))
end

done = function(summary, latency, requests)
  bench_report(summary, latency)
end
