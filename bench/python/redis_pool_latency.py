"""redis_pool_latency, Python reference: one no-op task's round trip through
BaseManager queues (put, a worker Process gets and puts back, get), each
timed after `warmup` untimed ones.

Headline figures: p50_us and p99_us (lower is better).
"""
import multiprocessing
import time

import benchlib
import bm_queues

BENCH = "redis_pool_latency"
SIZES = {"calls": 5000, "warmup": 200}
QUICK_SIZES = {"calls": 200, "warmup": 20}


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    ctx = multiprocessing.get_context("fork")
    server = bm_queues.start_server(ctx)
    worker = ctx.Process(target=bm_queues.echo_worker, args=(server.address,))
    worker.start()
    tasks, results = bm_queues.connect(server.address)
    for i in range(sizes["warmup"]):
        tasks.put(i)
        assert results.get() == i
    calls = sizes["calls"]
    lat = []
    start = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        tasks.put(i)
        assert results.get() == i
        lat.append((time.perf_counter() - t) * 1e6)
    seconds = time.perf_counter() - start
    tasks.put(None)
    worker.join()
    del tasks, results
    server.shutdown()
    lat.sort()
    benchlib.emit(
        BENCH,
        calls,
        seconds,
        transport="basemanager-tcp",
        p50_us=round(benchlib.percentile(lat, 0.5), 1),
        p99_us=round(benchlib.percentile(lat, 0.99), 1),
    )


if __name__ == "__main__":
    main()
