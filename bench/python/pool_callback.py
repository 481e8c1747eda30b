"""pool_callback: throughput of apply_async with a completion callback.

Pool(2); submits `tasks` pool.apply_async(identity, (i,), callback=...) calls.
The callback runs on the pool's result thread in the parent, counts results
and sets an Event after the last one; the timer runs from the first
submission until that Event is set. Pool creation and a warm-up map over 100
items are not timed.

Headline figure: ops_per_sec = tasks per second (higher is better).
"""
import multiprocessing
import threading
import time

import benchlib
from benchlib import identity

BENCH = "pool_callback"
POOL_SIZE = 2
SIZES = {"tasks": 100000}
QUICK_SIZES = {"tasks": 2000}


class CallbackCounter:
    """Counts callback invocations and signals when all expected have run."""

    def __init__(self, expected):
        self.expected = expected
        self.count = 0
        self.total = 0
        self.all_done = threading.Event()

    def on_result(self, value):
        self.count += 1
        self.total += value
        if self.count == self.expected:
            self.all_done.set()


def main():
    tasks = benchlib.sizes(SIZES, QUICK_SIZES)["tasks"]
    ctx = multiprocessing.get_context("fork")
    counter = CallbackCounter(tasks)
    with ctx.Pool(POOL_SIZE) as pool:
        pool.map(identity, range(100))  # warm-up

        start = time.perf_counter()
        for i in range(tasks):
            pool.apply_async(identity, (i,), callback=counter.on_result)
        counter.all_done.wait()
        seconds = time.perf_counter() - start

    assert counter.count == tasks
    assert counter.total == sum(range(tasks))
    benchlib.emit(BENCH, tasks, seconds, pool_size=POOL_SIZE)


if __name__ == "__main__":
    main()
