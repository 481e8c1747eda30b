"""futures_submit: concurrent.futures.ProcessPoolExecutor task throughput.

ProcessPoolExecutor(2, fork context); `tasks` executor.submit(identity, i)
calls, then .result() on every Future in submission order; both timed.
Executor creation and a warm-up map over 100 items are not.

Headline figure: ops_per_sec = tasks per second (higher is better).
"""
import concurrent.futures
import multiprocessing
import time

import benchlib
from benchlib import identity

BENCH = "futures_submit"
MAX_WORKERS = 2
SIZES = {"tasks": 50000}
QUICK_SIZES = {"tasks": 1000}


def main():
    tasks = benchlib.sizes(SIZES, QUICK_SIZES)["tasks"]
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=MAX_WORKERS, mp_context=ctx
    ) as executor:
        list(executor.map(identity, range(100)))  # warm-up: starts the workers

        start = time.perf_counter()
        futures = [executor.submit(identity, i) for i in range(tasks)]
        results = [f.result() for f in futures]
        seconds = time.perf_counter() - start

    assert results == list(range(tasks))
    benchlib.emit(BENCH, tasks, seconds, max_workers=MAX_WORKERS)


if __name__ == "__main__":
    main()
