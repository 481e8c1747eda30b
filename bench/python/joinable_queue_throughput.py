"""joinable_queue_throughput: small items through a JoinableQueue with acks.

A producer Process puts the ints 0..items-1 on a multiprocessing.JoinableQueue
and then calls queue.join(); the main process does get() + task_done() per
item. Timed from starting the producer until it has exited (after its join()
returned, so every item was acknowledged).

Headline figure: ops_per_sec = items per second (higher is better).
"""
import multiprocessing
import time

import benchlib

BENCH = "joinable_queue_throughput"
SIZES = {"items": 200000}
QUICK_SIZES = {"items": 5000}


def produce_and_join(queue, count):
    for i in range(count):
        queue.put(i)
    queue.join()


def main():
    items = benchlib.sizes(SIZES, QUICK_SIZES)["items"]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.JoinableQueue()
    producer = ctx.Process(target=produce_and_join, args=(queue, items))

    start = time.perf_counter()
    producer.start()
    total = 0
    for _ in range(items):
        total += queue.get()
        queue.task_done()
    producer.join()
    seconds = time.perf_counter() - start

    assert total == sum(range(items))
    assert producer.exitcode == 0
    benchlib.emit(BENCH, items, seconds)


if __name__ == "__main__":
    main()
