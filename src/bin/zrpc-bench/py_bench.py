"""zerorpc-python side of `zrpc-bench --python` (written to a temporary file
and run with the interpreter that has zerorpc 0.6.3).

usage: py_bench.py serve ENDPOINT
       py_bench.py both ENDPOINT|self CALLS SIZE
`both` times CALLS sequential echo(SIZE bytes) calls against ENDPOINT, or
against a Python server it starts in a separate process (`self`), and prints
CALLS_PER_S <rate>.
"""
import socket
import subprocess
import sys
import time

import zerorpc


class Echo(object):
    def echo(self, x):
        return x


def serve(endpoint):
    server = zerorpc.Server(Echo())
    server.bind(endpoint)
    print("READY", flush=True)
    server.run()


def free_endpoint():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "tcp://127.0.0.1:%d" % port


def both(endpoint, calls, size):
    child = None
    if endpoint == "self":
        endpoint = free_endpoint()
        child = subprocess.Popen(
            [sys.executable, __file__, "serve", endpoint], stdout=subprocess.PIPE
        )
        child.stdout.readline()
    try:
        client = zerorpc.Client(timeout=30)
        client.connect(endpoint)
        payload = b"\x5a" * size
        for _ in range(50):
            client.echo(payload)
        started = time.time()
        for _ in range(calls):
            client.echo(payload)
        elapsed = time.time() - started
        print("CALLS_PER_S %.1f" % (calls / elapsed), flush=True)
        client.close()
    finally:
        if child is not None:
            child.kill()
            child.wait()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        both(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
