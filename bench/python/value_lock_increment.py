"""value_lock_increment: shared-memory counter guarded by its own lock.

counter = multiprocessing.Value('i', 0) (with its lock); each of `processes`
Processes runs `increments_per_process` times
    with counter.get_lock(): counter.value += 1
Timed from starting the Processes to joining them.

Headline figure: ops_per_sec = increments per second (higher is better);
final_value must equal processes * increments_per_process.
"""
import multiprocessing
import time

import benchlib

BENCH = "value_lock_increment"
SIZES = {"processes": 2, "increments_per_process": 200000}
QUICK_SIZES = {"processes": 2, "increments_per_process": 5000}


def increment_many(counter, times):
    for _ in range(times):
        with counter.get_lock():
            counter.value += 1


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    per_process = sizes["increments_per_process"]
    total = sizes["processes"] * per_process
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("i", 0)
    processes = [
        ctx.Process(target=increment_many, args=(counter, per_process))
        for _ in range(sizes["processes"])
    ]

    start = time.perf_counter()
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    seconds = time.perf_counter() - start

    final_value = counter.value
    exit_codes_ok = all(p.exitcode == 0 for p in processes)
    benchlib.emit(
        BENCH,
        total,
        seconds,
        processes=sizes["processes"],
        final_value=final_value,
        correct=(final_value == total and exit_codes_ok),
    )


if __name__ == "__main__":
    main()
