"""pool_large_payload: moving one large argument to a Pool worker.

Pool(2); pool.apply(len, (payload,)) with a `payload_bytes` bytes object
(parent -> worker, an int comes back). One warm-up call, then `calls` timed
sequential calls. GB = 10**9 bytes.

Headline figure: gb_per_sec (higher is better); also median_call_seconds.
"""
import multiprocessing
import statistics
import time

import benchlib

BENCH = "pool_large_payload"
POOL_SIZE = 2
SIZES = {"payload_bytes": 67108864, "calls": 10}
QUICK_SIZES = {"payload_bytes": 1048576, "calls": 3}


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    payload_bytes, calls = sizes["payload_bytes"], sizes["calls"]
    ctx = multiprocessing.get_context("fork")
    payload = bytes(payload_bytes)
    with ctx.Pool(POOL_SIZE) as pool:
        assert pool.apply(len, (payload,)) == payload_bytes  # warm-up

        call_seconds = []
        for _ in range(calls):
            start = time.perf_counter()
            result = pool.apply(len, (payload,))
            call_seconds.append(time.perf_counter() - start)
            assert result == payload_bytes

    total_seconds = sum(call_seconds)
    benchlib.emit(
        BENCH,
        calls,
        total_seconds,
        ops_digits=3,
        pool_size=POOL_SIZE,
        payload_bytes=payload_bytes,
        gb_per_sec=round(payload_bytes * calls / total_seconds / 1e9, 3),
        median_call_seconds=round(statistics.median(call_seconds), 6),
    )


if __name__ == "__main__":
    main()
