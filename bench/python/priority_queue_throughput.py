"""priority_queue_throughput: small items through a priority queue shared by
processes.

Python's multiprocessing has no cross-process priority queue, so this uses
the standard way to share one: a queue.PriorityQueue living in a manager
server process, registered with
BaseManager.register("PriorityQueue", queue.PriorityQueue) (the proxy type
multiprocessing.Manager() would give for it). A producer Process puts a fixed
scrambled permutation of the ints 0..items-1 (the same one as the Rust side)
through its proxy; the main process gets them all through its own. Timed from
starting the producer to the last get (the manager is started before the
timer).

Headline figure: ops_per_sec = items per second (higher is better).
"""
import multiprocessing
import queue
import time
from multiprocessing.managers import BaseManager

import benchlib

BENCH = "priority_queue_throughput"
SIZES = {"items": 200000}
QUICK_SIZES = {"items": 5000}

MULTIPLIER = 0x9E3779B97F4A7C15


class QueueManager(BaseManager):
    """A manager serving queue.PriorityQueue objects."""


QueueManager.register("PriorityQueue", queue.PriorityQueue)


def scramble(i, n):
    """A permutation of 0..n-1: multiply by an odd constant modulo a power of
    two at least n, skipping values outside (cycle walking)."""
    m = 1 << max(1, (n - 1).bit_length())
    x = i
    while True:
        x = (x * MULTIPLIER) & (m - 1)
        if x < n:
            return x


def produce(q, count):
    for i in range(count):
        q.put(scramble(i, count))


def main():
    items = benchlib.sizes(SIZES, QUICK_SIZES)["items"]
    ctx = multiprocessing.get_context("fork")
    with QueueManager(ctx=ctx) as manager:
        q = manager.PriorityQueue()
        producer = ctx.Process(target=produce, args=(q, items))

        start = time.perf_counter()
        producer.start()
        total = 0
        for _ in range(items):
            total += q.get()
        seconds = time.perf_counter() - start

        producer.join()
    assert total == sum(range(items))
    assert producer.exitcode == 0
    benchlib.emit(BENCH, items, seconds)


if __name__ == "__main__":
    main()
