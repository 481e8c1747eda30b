"""pool_imap_unordered: streaming Pool.imap_unordered throughput, chunksize 1.

Pool(2); iterates pool.imap_unordered(square, range(items), chunksize=1) to
the end, in completion order. Pool creation and a warm-up map over 100 items
are not timed.

Headline figure: ops_per_sec = items per second (higher is better).
"""
import benchlib
from benchlib import square

BENCH = "pool_imap_unordered"
POOL_SIZE = 2
SIZES = {"items": 100000}
QUICK_SIZES = {"items": 2000}


def main():
    items = benchlib.sizes(SIZES, QUICK_SIZES)["items"]
    values, seconds = benchlib.time_in_pool(
        POOL_SIZE, lambda pool: list(pool.imap_unordered(square, range(items), chunksize=1))
    )
    count, total = len(values), sum(values)

    assert count == items
    assert total == sum(i * i for i in range(items))
    benchlib.emit(BENCH, items, seconds, pool_size=POOL_SIZE, chunksize=1)


if __name__ == "__main__":
    main()
