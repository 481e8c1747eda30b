"""pool_startup: create and tear down a 2-worker Pool.

Each cycle is Pool(2) followed by close() and join(); no tasks are run.
Reports the median, min and max seconds per cycle.

Headline figure: median_cycle_seconds (lower is better).
"""
import multiprocessing
import statistics
import time

import benchlib

BENCH = "pool_startup"
POOL_SIZE = 2
SIZES = {"cycles": 20}
QUICK_SIZES = {"cycles": 3}


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    ctx = multiprocessing.get_context("fork")
    cycle_seconds = []
    for _ in range(sizes["cycles"]):
        start = time.perf_counter()
        pool = ctx.Pool(POOL_SIZE)
        pool.close()
        pool.join()
        cycle_seconds.append(time.perf_counter() - start)
    benchlib.emit(
        BENCH,
        sizes["cycles"],
        sum(cycle_seconds),
        pool_size=POOL_SIZE,
        median_cycle_seconds=round(statistics.median(cycle_seconds), 6),
        min_cycle_seconds=round(min(cycle_seconds), 6),
        max_cycle_seconds=round(max(cycle_seconds), 6),
    )


if __name__ == "__main__":
    main()
