"""queue_large_items: large byte strings through a multiprocessing.Queue.

A producer Process puts `items` bytes objects of `item_bytes` each on a
multiprocessing.Queue; the main process gets them all and checks their
length. Timed from starting the producer to the last get. GB = 10**9 bytes.

Headline figure: gb_per_sec (higher is better).
"""
import multiprocessing
import time

import benchlib

BENCH = "queue_large_items"
SIZES = {"items": 200, "item_bytes": 1048576}
QUICK_SIZES = {"items": 20, "item_bytes": 65536}


def produce(queue, count, item_bytes):
    item = bytes(item_bytes)
    for _ in range(count):
        queue.put(item)


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    items, item_bytes = sizes["items"], sizes["item_bytes"]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    producer = ctx.Process(target=produce, args=(queue, items, item_bytes))

    start = time.perf_counter()
    producer.start()
    received_bytes = 0
    for _ in range(items):
        item = queue.get()
        assert len(item) == item_bytes
        received_bytes += len(item)
    seconds = time.perf_counter() - start

    producer.join()
    assert producer.exitcode == 0
    benchlib.emit(
        BENCH,
        items,
        seconds,
        item_bytes=item_bytes,
        gb_per_sec=round(received_bytes / seconds / 1e9, 3),
    )


if __name__ == "__main__":
    main()
