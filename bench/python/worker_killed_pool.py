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
import os
import signal
import time

import benchlib
from benchlib import identity

BENCH = "worker_killed_pool"
POOL_SIZE = 2
SIZES = {"task_sleep_ms": 500, "kill_after_ms": 100, "timeout_ms": 5000}
QUICK_SIZES = {"task_sleep_ms": 300, "kill_after_ms": 50, "timeout_ms": 1000}

worker_pid_slot = None  # set in each worker by the pool initializer


def init_worker(pid_slot):
    global worker_pid_slot
    worker_pid_slot = pid_slot


def report_pid_then_sleep(seconds):
    worker_pid_slot.value = os.getpid()
    time.sleep(seconds)
    return "finished"


def exception_name(exc):
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


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
        while pid_slot.value == 0:
            time.sleep(0.001)
        victim_pid = pid_slot.value
        time.sleep(sizes["kill_after_ms"] / 1000)

        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.perf_counter()
        try:
            async_result.get(timeout=timeout)
            outcome, exception = "returned", None
        except multiprocessing.TimeoutError as exc:
            outcome, exception = "timed_out", exception_name(exc)
        except Exception as exc:
            outcome, exception = "raised", exception_name(exc)
        detect_seconds = time.perf_counter() - killed_at

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
