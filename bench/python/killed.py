"""The shared half of the two worker-killed scenarios (stdlib only).

A task records its worker's PID in a shared Value and sleeps; the parent waits
for the PID, SIGKILLs that worker and waits for the task's outcome. Only how a
task is submitted and awaited differs between Pool and ProcessPoolExecutor.
"""
import os
import signal
import time

worker_pid_slot = None  # set in each worker by the pool/executor initializer


def init_worker(pid_slot):
    global worker_pid_slot
    worker_pid_slot = pid_slot


def report_pid_then_sleep(seconds):
    worker_pid_slot.value = os.getpid()
    time.sleep(seconds)
    return "finished"


def exception_name(exc):
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def kill_and_wait(pid_slot, kill_after_seconds, wait, timeout_error):
    """Waits for the task to report its worker, SIGKILLs that worker after
    `kill_after_seconds`, then calls `wait()` (the task's get/result with its
    timeout). Returns (outcome, exception name, seconds from kill to outcome):
    outcome is "returned", "timed_out" (`timeout_error` raised) or "raised".
    """
    while pid_slot.value == 0:
        time.sleep(0.001)
    victim_pid = pid_slot.value
    time.sleep(kill_after_seconds)

    os.kill(victim_pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    try:
        wait()
        outcome, exception = "returned", None
    except timeout_error as exc:
        outcome, exception = "timed_out", exception_name(exc)
    except Exception as exc:
        outcome, exception = "raised", exception_name(exc)
    return outcome, exception, time.perf_counter() - killed_at
