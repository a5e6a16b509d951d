-- Loaded by every wrk run of scripts/bench.sh: at the end of a run, prints one
-- machine-readable line (latencies in microseconds) that the script parses.
-- wrk counts a response with a status above 399 in errors.status.

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%d"
         .. " status_errors=%d connect_errors=%d read_errors=%d"
         .. " write_errors=%d timeout_errors=%d\n",
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99), latency.mean,
      e.status, e.connect, e.read, e.write, e.timeout))
end
