"""queue_throughput: small items through a multiprocessing.Queue.

A producer Process puts the ints 0..items-1 on a multiprocessing.Queue; the
main process gets them all. Timed from starting the producer to the last get.

Headline figure: ops_per_sec = items per second (higher is better).
"""
import multiprocessing

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
    total, seconds = benchlib.time_drain(ctx, ctx.Queue(), produce, items)
    assert total == sum(range(items))
    benchlib.emit(BENCH, items, seconds)


if __name__ == "__main__":
    main()
