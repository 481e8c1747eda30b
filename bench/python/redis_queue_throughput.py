"""redis_queue_throughput, Python reference: items through a BaseManager
queue. A producer Process puts the ints 0..items-1 in lists of 1,000 (the
Rust side's put_many batches), the main process gets them; then
`single_items` one by one.

Headline figures: ops_per_sec (items per second, batched; higher is better)
and single_ops_per_sec.
"""
import multiprocessing
import time

import benchlib
import bm_queues

BENCH = "redis_queue_throughput"
SIZES = {"items": 200000, "single_items": 20000}
QUICK_SIZES = {"items": 5000, "single_items": 500}
BATCH = 1000


def produce(address, count, batch):
    tasks, _ = bm_queues.connect(address)
    for i in range(0, count, batch):
        if batch == 1:
            tasks.put(i)
        else:
            tasks.put(list(range(i, min(i + batch, count))))


def run(ctx, address, count, batch):
    tasks, _ = bm_queues.connect(address)
    start = time.perf_counter()
    producer = ctx.Process(target=produce, args=(address, count, batch))
    producer.start()
    got = 0
    while got < count:
        item = tasks.get()
        got += len(item) if batch != 1 else 1
    seconds = time.perf_counter() - start
    producer.join()
    assert producer.exitcode == 0
    return seconds


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    ctx = multiprocessing.get_context("fork")
    server = bm_queues.start_server(ctx)
    seconds = run(ctx, server.address, sizes["items"], BATCH)
    single_seconds = run(ctx, server.address, sizes["single_items"], 1)
    server.shutdown()
    benchlib.emit(
        BENCH,
        sizes["items"],
        seconds,
        transport="basemanager-tcp",
        batch=BATCH,
        single_n=sizes["single_items"],
        single_ops_per_sec=round(sizes["single_items"] / single_seconds, 1),
    )


if __name__ == "__main__":
    main()
