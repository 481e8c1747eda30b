"""remote_manager_queue: request/response through a BaseManager over TCP.

A BaseManager server process serves two queue.Queue objects (tasks, results)
on 127.0.0.1, OS-chosen port, with an authkey. A worker Process and the main
process both connect() with a client-side manager that only knows the names.
One round trip: master tasks.put(i); worker tasks.get() and
results.put(i * i); master results.get() (4 proxy calls over TCP). `warmup`
untimed round trips, then `round_trips` timed ones.

Headline figure: ops_per_sec = round trips per second (higher is better);
also mean_round_trip_us.
"""
import multiprocessing
import queue
import time
from multiprocessing.managers import BaseManager

import benchlib

BENCH = "remote_manager_queue"
SIZES = {"round_trips": 20000, "warmup": 100}
QUICK_SIZES = {"round_trips": 300, "warmup": 10}
AUTHKEY = b"multiproc-bench"

# Live in the server process, which is forked after they exist.
TASK_QUEUE = queue.Queue()
RESULT_QUEUE = queue.Queue()


def get_task_queue():
    return TASK_QUEUE


def get_result_queue():
    return RESULT_QUEUE


class ServerManager(BaseManager):
    """Server side: builds the shared queues."""


ServerManager.register("get_task_queue", callable=get_task_queue)
ServerManager.register("get_result_queue", callable=get_result_queue)


class ClientManager(BaseManager):
    """Client side: knows only the names, like a client on another host."""


ClientManager.register("get_task_queue")
ClientManager.register("get_result_queue")


def connect(address):
    client = ClientManager(address=address, authkey=AUTHKEY)
    client.connect()
    return client.get_task_queue(), client.get_result_queue()


def square_worker(address):
    tasks, results = connect(address)
    while True:
        task = tasks.get()
        if task is None:
            break
        results.put(task * task)


def main():
    sizes = benchlib.sizes(SIZES, QUICK_SIZES)
    round_trips = sizes["round_trips"]
    ctx = multiprocessing.get_context("fork")
    server = ServerManager(address=("127.0.0.1", 0), authkey=AUTHKEY, ctx=ctx)
    server.start()
    address = server.address

    worker = ctx.Process(target=square_worker, args=(address,))
    worker.start()
    tasks, results = connect(address)

    for i in range(sizes["warmup"]):
        tasks.put(i)
        assert results.get() == i * i

    start = time.perf_counter()
    for i in range(round_trips):
        tasks.put(i)
        assert results.get() == i * i
    seconds = time.perf_counter() - start

    tasks.put(None)
    worker.join()
    del tasks, results
    server.shutdown()

    benchlib.emit(
        BENCH,
        round_trips,
        seconds,
        transport="tcp-loopback",
        mean_round_trip_us=round(seconds / round_trips * 1e6, 1),
        worker_exitcode=worker.exitcode,
    )


if __name__ == "__main__":
    main()
