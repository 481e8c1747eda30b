"""process_spawn_join: start a trivial child process and join it.

`warmup` untimed cycles, then `cycles` sequential
Process(target=noop).start() + join(), fork start method, each timed.

Headline figure: per_process_us = median cycle in microseconds (lower is better).
"""
import multiprocessing
import statistics
import time

import benchlib

BENCH = "process_spawn_join"
SIZES = {"cycles": 1000, "warmup": 20}
QUICK_SIZES = {"cycles": 50, "warmup": 5}


def noop():
    pass


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    ctx = multiprocessing.get_context("fork")
    for _ in range(sizes["warmup"]):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    samples = []
    total_start = time.perf_counter()
    for _ in range(sizes["cycles"]):
        start = time.perf_counter()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        samples.append(time.perf_counter() - start)
        assert p.exitcode == 0
    total = time.perf_counter() - total_start
    benchlib.emit(
        BENCH,
        sizes["cycles"],
        total,
        per_process_us=round(statistics.median(samples) * 1e6, 1),
    )


if __name__ == "__main__":
    main()
