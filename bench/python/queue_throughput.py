"""queue_throughput: small items through a multiprocessing.Queue.

A producer Process puts the ints 0..items-1 on a multiprocessing.Queue; the
main process gets them all. Timed from starting the producer to the last get.

Headline figure: ops_per_sec = items per second (higher is better).
"""
import multiprocessing
import time

import benchlib

BENCH = "queue_throughput"
SIZES = {"items": 200000}
QUICK_SIZES = {"items": 5000}


def produce(queue, count):
    for i in range(count):
        queue.put(i)


def main():
    items = benchlib.sizes(SIZES, QUICK_SIZES)["items"]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    producer = ctx.Process(target=produce, args=(queue, items))

    start = time.perf_counter()
    producer.start()
    total = 0
    for _ in range(items):
        total += queue.get()
    seconds = time.perf_counter() - start

    producer.join()
    assert total == sum(range(items))
    assert producer.exitcode == 0
    benchlib.emit(BENCH, items, seconds)


if __name__ == "__main__":
    main()
