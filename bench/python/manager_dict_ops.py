"""manager_dict_ops: uncontended Manager dict round trips from one client.

The main process does `keys` writes d["key{i}"] = i, then `keys` reads
d["key{i}"], on a Manager dict. Manager start-up is not timed.

seconds / ops_per_sec cover both phases; set_ops_per_sec and
get_ops_per_sec each phase alone.

Headline figure: ops_per_sec (higher is better).
"""
import multiprocessing
import time

import benchlib

BENCH = "manager_dict_ops"
SIZES = {"keys": 50000}
QUICK_SIZES = {"keys": 1000}


def main():
    count = benchlib.sizes(SIZES, QUICK_SIZES)["keys"]
    ctx = multiprocessing.get_context("fork")
    keys = [f"key{i}" for i in range(count)]
    with ctx.Manager() as manager:
        shared_dict = manager.dict()

        start = time.perf_counter()
        for i, key in enumerate(keys):
            shared_dict[key] = i
        set_seconds = time.perf_counter() - start

        start = time.perf_counter()
        total = 0
        for key in keys:
            total += shared_dict[key]
        get_seconds = time.perf_counter() - start

        assert len(shared_dict) == count
    assert total == sum(range(count))

    benchlib.emit(
        BENCH,
        2 * count,
        set_seconds + get_seconds,
        set_ops_per_sec=round(count / set_seconds, 1),
        get_ops_per_sec=round(count / get_seconds, 1),
    )


if __name__ == "__main__":
    main()
