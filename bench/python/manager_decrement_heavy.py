"""manager_decrement_heavy: contended read-modify-write on a Manager dict.

A Manager dict starts at {'count': processes * decrements_per_process}; each
of `processes` Processes runs `decrements_per_process` times
    with lock: d['count'] -= 1
(lock = multiprocessing.Lock; two Manager round trips per decrement). Timed
from starting the Processes to joining them; Manager start-up is not timed.

Headline figure: ops_per_sec = decrements per second (higher is better);
final_count must be 0.
"""
import multiprocessing
import time

import benchlib

BENCH = "manager_decrement_heavy"
SIZES = {"processes": 2, "decrements_per_process": 20000}
QUICK_SIZES = {"processes": 2, "decrements_per_process": 500}


def decrement_many(shared_dict, lock, times):
    for _ in range(times):
        with lock:
            shared_dict["count"] -= 1


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    per_process = sizes["decrements_per_process"]
    total = sizes["processes"] * per_process
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        shared_dict = manager.dict({"count": total})
        lock = ctx.Lock()
        processes = [
            ctx.Process(target=decrement_many, args=(shared_dict, lock, per_process))
            for _ in range(sizes["processes"])
        ]

        start = time.perf_counter()
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        seconds = time.perf_counter() - start

        final_count = shared_dict["count"]
        exit_codes_ok = all(p.exitcode == 0 for p in processes)

    benchlib.emit(
        BENCH,
        total,
        seconds,
        processes=sizes["processes"],
        final_count=final_count,
        correct=(final_count == 0 and exit_codes_ok),
    )


if __name__ == "__main__":
    main()
