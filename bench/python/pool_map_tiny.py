"""pool_map_tiny: Pool.map throughput on tiny items, default chunksize.

Pool(2); times pool.map(square, range(items)) with chunksize left at its
default (Python picks ceil(items / (4 * pool_size))). Pool creation and a
warm-up map over 100 items are not timed.

Headline figure: ops_per_sec = items per second (higher is better).
"""
import benchlib
from benchlib import square

BENCH = "pool_map_tiny"
POOL_SIZE = 2
SIZES = {"items": 1000000}
QUICK_SIZES = {"items": 20000}


def main():
    items = benchlib.sizes(SIZES, QUICK_SIZES)["items"]
    results, seconds = benchlib.time_in_pool(
        POOL_SIZE, lambda pool: pool.map(square, range(items))
    )

    assert len(results) == items and results[-1] == (items - 1) ** 2
    default_chunksize = -(-items // (4 * POOL_SIZE))  # what Pool.map computes
    benchlib.emit(BENCH, items, seconds, pool_size=POOL_SIZE, chunksize=default_chunksize)


if __name__ == "__main__":
    main()
