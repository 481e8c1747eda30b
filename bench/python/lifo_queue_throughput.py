"""lifo_queue_throughput: small items through a LIFO queue shared by processes.

Python's multiprocessing has no cross-process LIFO queue, so this uses the
standard way to share one: a queue.LifoQueue living in a manager server
process, registered with BaseManager.register("LifoQueue", queue.LifoQueue)
(the proxy type multiprocessing.Manager() would give for it). A producer
Process puts the ints 0..items-1 through its proxy; the main process gets them
all through its own. Timed from starting the producer to the last get (the
manager is started before the timer).

Headline figure: ops_per_sec = items per second (higher is better).
"""
import multiprocessing
import queue
import time
from multiprocessing.managers import BaseManager

import benchlib

BENCH = "lifo_queue_throughput"
SIZES = {"items": 200000}
QUICK_SIZES = {"items": 5000}


class QueueManager(BaseManager):
    """A manager serving queue.LifoQueue objects."""


QueueManager.register("LifoQueue", queue.LifoQueue)


def produce(q, count):
    for i in range(count):
        q.put(i)


def main():
    items = benchlib.sizes(SIZES, QUICK_SIZES)["items"]
    ctx = multiprocessing.get_context("fork")
    with QueueManager(ctx=ctx) as manager:
        q = manager.LifoQueue()
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
