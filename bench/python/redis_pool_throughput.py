"""redis_pool_throughput, Python reference: no-op tasks through BaseManager
queues (task_master / task_worker), since Python has no Redis pool.

Two worker Processes take ints from the task queue and put them back on the
result queue. Batched: the master puts `tasks` ints, then gets them all.
Unbatched: the same for `unbatched_tasks` (Python's proxies have no
pipelining, so both are one call per task: the Rust side's unbatched shape,
one submission call per task with many in flight).

Headline figures: ops_per_sec (batched, higher is better) and
unbatched_ops_per_sec.
"""
import multiprocessing
import time

import benchlib
import bm_queues

BENCH = "redis_pool_throughput"
SIZES = {"tasks": 100000, "unbatched_tasks": 10000}
QUICK_SIZES = {"tasks": 2000, "unbatched_tasks": 200}
WORKERS = 2


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    ctx = multiprocessing.get_context("fork")
    server = bm_queues.start_server(ctx)
    workers = [ctx.Process(target=bm_queues.echo_worker, args=(server.address,)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    tasks, results = bm_queues.connect(server.address)

    n = sizes["tasks"]
    start = time.perf_counter()
    for i in range(n):
        tasks.put(i)
    got = sorted(results.get() for _ in range(n))
    seconds = time.perf_counter() - start
    assert got == list(range(n))

    m = sizes["unbatched_tasks"]
    start = time.perf_counter()
    for i in range(m):
        tasks.put(i)
    got = sorted(results.get() for _ in range(m))
    unbatched_seconds = time.perf_counter() - start
    assert got == list(range(m))

    for _ in workers:
        tasks.put(None)
    for w in workers:
        w.join()
    del tasks, results
    server.shutdown()
    benchlib.emit(
        BENCH,
        n,
        seconds,
        transport="basemanager-tcp",
        workers=WORKERS,
        unbatched_n=m,
        unbatched_ops_per_sec=round(m / unbatched_seconds, 1),
    )


if __name__ == "__main__":
    main()
