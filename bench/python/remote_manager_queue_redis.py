"""remote_manager_queue_redis, Python reference: the remote_manager_queue
scenario itself (BaseManager over TCP), beside the Rust line that runs the
same round trips through Redis queues.

Headline figures: ops_per_sec (round trips per second, higher is better)
and mean_round_trip_us.
"""
import remote_manager_queue as base

BENCH = "remote_manager_queue_redis"
SIZES = {"round_trips": 20000, "warmup": 100}
QUICK_SIZES = {"round_trips": 300, "warmup": 10}

if __name__ == "__main__":
    base.BENCH = BENCH
    base.SIZES = SIZES
    base.QUICK_SIZES = QUICK_SIZES
    base.main()
