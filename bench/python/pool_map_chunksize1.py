"""pool_map_chunksize1: Pool.map throughput on tiny items, one item per task.

Pool(2); times pool.map(square, range(items), chunksize=1): every item is its
own task message and its own result message. Pool creation and a warm-up map
over 100 items are not timed.

Headline figure: ops_per_sec = items per second (higher is better).
"""
import benchlib
from benchlib import square

BENCH = "pool_map_chunksize1"
POOL_SIZE = 2
SIZES = {"items": 100000}
QUICK_SIZES = {"items": 2000}


def main():
    items = benchlib.sizes(SIZES, QUICK_SIZES)["items"]
    results, seconds = benchlib.time_in_pool(
        POOL_SIZE, lambda pool: pool.map(square, range(items), chunksize=1)
    )

    assert len(results) == items and results[-1] == (items - 1) ** 2
    benchlib.emit(BENCH, items, seconds, pool_size=POOL_SIZE, chunksize=1)


if __name__ == "__main__":
    main()
