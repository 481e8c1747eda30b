"""worker_killed_pool: what Pool does when a worker dies mid-task.

Pool(2). One apply_async task records its worker's PID in a shared Value and
sleeps `task_sleep_ms`; `kill_after_ms` after the PID is known the parent
SIGKILLs that worker and calls .get(timeout=timeout_ms / 1000).

CPython's Pool replaces the worker but never fails the lost task, so get()
times out. Recorded: outcome ("timed_out", "raised" or "returned"), the
exception type, detect_seconds (kill to outcome), and whether the pool still
runs new tasks.

Headline figures: detect_seconds (lower is better) and outcome.
"""
import multiprocessing

import benchlib
from benchlib import identity
from killed import init_worker, kill_and_wait, report_pid_then_sleep

BENCH = "worker_killed_pool"
POOL_SIZE = 2
SIZES = {"task_sleep_ms": 500, "kill_after_ms": 100, "timeout_ms": 5000}
QUICK_SIZES = {"task_sleep_ms": 300, "kill_after_ms": 50, "timeout_ms": 1000}


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    timeout = sizes["timeout_ms"] / 1000
    ctx = multiprocessing.get_context("fork")
    pid_slot = ctx.Value("i", 0)
    pool = ctx.Pool(POOL_SIZE, initializer=init_worker, initargs=(pid_slot,))
    try:
        async_result = pool.apply_async(
            report_pid_then_sleep, (sizes["task_sleep_ms"] / 1000,)
        )
        outcome, exception, detect_seconds = kill_and_wait(
            pid_slot,
            sizes["kill_after_ms"] / 1000,
            lambda: async_result.get(timeout=timeout),
            multiprocessing.TimeoutError,
        )

        try:
            pool_usable_after = pool.apply_async(identity, (42,)).get(timeout=5) == 42
        except Exception:
            pool_usable_after = False
    finally:
        pool.terminate()
        pool.join()

    benchlib.emit(
        BENCH,
        1,
        detect_seconds,
        rate=False,
        pool_size=POOL_SIZE,
        get_timeout_seconds=timeout,
        outcome=outcome,
        exception=exception,
        detect_seconds=round(detect_seconds, 6),
        pool_usable_after=pool_usable_after,
    )


if __name__ == "__main__":
    main()
