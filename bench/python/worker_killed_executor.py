"""worker_killed_executor: what ProcessPoolExecutor does when a worker dies.

ProcessPoolExecutor(2, fork context). One submitted task records its
worker's PID in a shared Value and sleeps `task_sleep_ms`; `kill_after_ms`
after the PID is known the parent SIGKILLs that worker and calls
future.result(timeout=timeout_ms / 1000).

CPython raises BrokenProcessPool promptly and refuses all further work.
Recorded: outcome ("timed_out", "raised" or "returned"), the exception type,
detect_seconds (kill to outcome), and whether the executor still runs tasks.

Headline figures: detect_seconds (lower is better) and outcome.
"""
import concurrent.futures
import multiprocessing

import benchlib
from benchlib import identity
from killed import init_worker, kill_and_wait, report_pid_then_sleep

BENCH = "worker_killed_executor"
MAX_WORKERS = 2
SIZES = {"task_sleep_ms": 500, "kill_after_ms": 100, "timeout_ms": 5000}
QUICK_SIZES = {"task_sleep_ms": 300, "kill_after_ms": 50, "timeout_ms": 1000}


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    timeout = sizes["timeout_ms"] / 1000
    ctx = multiprocessing.get_context("fork")
    pid_slot = ctx.Value("i", 0)
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=MAX_WORKERS,
        mp_context=ctx,
        initializer=init_worker,
        initargs=(pid_slot,),
    )
    try:
        future = executor.submit(report_pid_then_sleep, sizes["task_sleep_ms"] / 1000)
        outcome, exception, detect_seconds = kill_and_wait(
            pid_slot,
            sizes["kill_after_ms"] / 1000,
            lambda: future.result(timeout=timeout),
            concurrent.futures.TimeoutError,
        )

        try:
            executor_usable_after = executor.submit(identity, 42).result(timeout=5) == 42
        except Exception:
            executor_usable_after = False
    finally:
        executor.shutdown(wait=True, cancel_futures=True)

    benchlib.emit(
        BENCH,
        1,
        detect_seconds,
        rate=False,
        max_workers=MAX_WORKERS,
        result_timeout_seconds=timeout,
        outcome=outcome,
        exception=exception,
        detect_seconds=round(detect_seconds, 6),
        executor_usable_after=executor_usable_after,
    )


if __name__ == "__main__":
    main()
