"""manager_decrement_seed: the classic Manager dict + Lock example, end to end.

Starts a Manager, d = manager.dict({'count': processes}), a
multiprocessing.Lock, then `processes` Processes that each do
    with lock: d['count'] -= 1
joins them all, reads the count (must be 0) and shuts the Manager down.

seconds = the whole example (Manager start to Manager shutdown); breakdown:
manager_start_seconds, processes_seconds, shutdown_seconds.

Headline figure: seconds (lower is better); final_count must be 0.
"""
import multiprocessing
import time

import benchlib

BENCH = "manager_decrement_seed"
SIZES = {"processes": 100}
QUICK_SIZES = {"processes": 10}


def decrement_once(shared_dict, lock):
    with lock:
        shared_dict["count"] -= 1


def main():
    processes_count = benchlib.sizes(SIZES, QUICK_SIZES)["processes"]
    ctx = multiprocessing.get_context("fork")

    t_begin = time.perf_counter()
    manager = ctx.Manager()
    t_manager_up = time.perf_counter()

    shared_dict = manager.dict({"count": processes_count})
    lock = ctx.Lock()

    t_processes_begin = time.perf_counter()
    processes = [
        ctx.Process(target=decrement_once, args=(shared_dict, lock))
        for _ in range(processes_count)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    t_processes_end = time.perf_counter()

    final_count = shared_dict["count"]
    exit_codes_ok = all(p.exitcode == 0 for p in processes)

    t_shutdown_begin = time.perf_counter()
    manager.shutdown()
    t_end = time.perf_counter()

    benchlib.emit(
        BENCH,
        processes_count,
        t_end - t_begin,
        manager_start_seconds=round(t_manager_up - t_begin, 6),
        processes_seconds=round(t_processes_end - t_processes_begin, 6),
        shutdown_seconds=round(t_end - t_shutdown_begin, 6),
        final_count=final_count,
        correct=(final_count == 0 and exit_codes_ok),
    )


if __name__ == "__main__":
    main()
