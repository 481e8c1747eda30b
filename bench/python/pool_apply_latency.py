"""pool_apply_latency: round trip of one synchronous Pool.apply call.

Pool(2); after `warmup` calls, times `calls` sequential
pool.apply(identity, (i,)) calls individually. Pool creation is not timed.

Headline figures: p50_us and p99_us (lower is better); also mean_us.
"""
import multiprocessing
import statistics
import time

import benchlib
from benchlib import identity

BENCH = "pool_apply_latency"
POOL_SIZE = 2
SIZES = {"calls": 20000, "warmup": 1000}
QUICK_SIZES = {"calls": 500, "warmup": 50}


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    calls = sizes["calls"]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(POOL_SIZE) as pool:
        for i in range(sizes["warmup"]):
            pool.apply(identity, (i,))

        latencies_ns = []
        total_start = time.perf_counter()
        for i in range(calls):
            start = time.perf_counter_ns()
            result = pool.apply(identity, (i,))
            latencies_ns.append(time.perf_counter_ns() - start)
            assert result == i
        total_seconds = time.perf_counter() - total_start

    latencies_ns.sort()
    benchlib.emit(
        BENCH,
        calls,
        total_seconds,
        pool_size=POOL_SIZE,
        p50_us=round(benchlib.percentile(latencies_ns, 0.50) / 1000, 1),
        p99_us=round(benchlib.percentile(latencies_ns, 0.99) / 1000, 1),
        mean_us=round(statistics.fmean(latencies_ns) / 1000, 1),
    )


if __name__ == "__main__":
    main()
