"""A BaseManager serving two queue.Queue objects (tasks, results) on
127.0.0.1: the Python reference shape of the Redis scenarios (Python has no
Redis tier in its standard library)."""
import queue
from multiprocessing.managers import BaseManager

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


def start_server(ctx):
    server = ServerManager(address=("127.0.0.1", 0), authkey=AUTHKEY, ctx=ctx)
    server.start()
    return server


def connect(address):
    client = ClientManager(address=address, authkey=AUTHKEY)
    client.connect()
    return client.get_task_queue(), client.get_result_queue()


def echo_worker(address):
    """Takes tasks until None; puts each back as its result (a no-op task)."""
    tasks, results = connect(address)
    while True:
        task = tasks.get()
        if task is None:
            break
        results.put(task)
