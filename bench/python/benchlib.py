"""Shared helpers of multiproc's Python counterparts (stdlib only).

Every scenario script imports this module for picking its sizes
(`--quick` selects the small ones the harness and CI use), printing its one
JSON line in the schema of the Python baseline, a nearest-rank percentile,
timing a section in a warmed-up fork Pool (pool scenarios) and timing a
producer Process through a queue (queue scenarios).
"""
import json
import platform
import sys

IMPL = "python-multiprocessing"


def sizes(full, quick):
    """Returns `quick` if the script was called with --quick, else `full`."""
    args = sys.argv[1:]
    if any(arg != "--quick" for arg in args):
        sys.exit(f"usage: {sys.argv[0]} [--quick]")
    return dict(quick if "--quick" in args else full)


def emit(bench, n, seconds, ops_digits=1, rate=True, **extra):
    """Prints the scenario's JSON line: common fields, then `extra` in order.

    `rate=False` prints `ops_per_sec: null` (the worker-killed scenarios).
    """
    record = {
        "bench": bench,
        "impl": IMPL,
        "python": platform.python_version(),
        "start_method": "fork",
        "n": n,
        "seconds": round(seconds, 6),
        "ops_per_sec": round(n / seconds, ops_digits) if rate else None,
    }
    record.update(extra)
    print(json.dumps(record), flush=True)


def time_in_pool(pool_size, timed):
    """Creates a fork Pool of `pool_size`, warms it up (a map over 100 items,
    so the workers are running), then returns (timed(pool), seconds taken)."""
    import multiprocessing
    import time

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(pool_size) as pool:
        pool.map(identity, range(100))  # warm-up
        start = time.perf_counter()
        result = timed(pool)
        return result, time.perf_counter() - start


def time_drain(ctx, queue, produce, items):
    """Starts a `ctx` Process running produce(queue, items), gets `items`
    items from `queue` here, and returns (their sum, seconds from starting
    the producer to the last get). Asserts the producer exited cleanly."""
    import time

    producer = ctx.Process(target=produce, args=(queue, items))
    start = time.perf_counter()
    producer.start()
    total = 0
    for _ in range(items):
        total += queue.get()
    seconds = time.perf_counter() - start
    producer.join()
    assert producer.exitcode == 0
    return total, seconds


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list."""
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def identity(x):
    return x


def square(x):
    return x * x
