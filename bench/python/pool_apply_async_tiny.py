"""pool_apply_async_tiny: throughput of many tiny asynchronous Pool tasks.

Pool(2); submits `tasks` pool.apply_async(identity, (i,)) calls, then .get()
on every AsyncResult in submission order; both are timed. Pool creation and
a warm-up map over 100 items are not.

Headline figure: ops_per_sec = tasks per second (higher is better).
"""
import benchlib
from benchlib import identity

BENCH = "pool_apply_async_tiny"
POOL_SIZE = 2
SIZES = {"tasks": 100000}
QUICK_SIZES = {"tasks": 2000}


def main():
    tasks = benchlib.sizes(SIZES, QUICK_SIZES)["tasks"]

    def submit_then_get(pool):
        async_results = [pool.apply_async(identity, (i,)) for i in range(tasks)]
        return [r.get() for r in async_results]

    results, seconds = benchlib.time_in_pool(POOL_SIZE, submit_then_get)

    assert results == list(range(tasks))
    benchlib.emit(BENCH, tasks, seconds, pool_size=POOL_SIZE)


if __name__ == "__main__":
    main()
