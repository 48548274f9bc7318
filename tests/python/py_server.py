"""A real zerorpc-python 0.6.3 server for interop tests.

usage: py_server.py ENDPOINT HEARTBEAT [connect]
Prints READY once bound, then serves until killed.
"""
import sys

import gevent
import zerorpc


class Svc(object):
    def add(self, a, b):
        """Add two numbers."""
        return a + b

    def boom(self, msg="bad"):
        raise ValueError(msg)

    def sleep(self, seconds):
        gevent.sleep(seconds)
        return "slept %s" % seconds

    def echo(self, value):
        return value

    produced = 0

    @zerorpc.stream
    def count(self, n):
        return iter(range(n))

    @zerorpc.stream
    def failing_stream(self, n):
        for i in range(n):
            yield i
        raise ValueError("failed after %d" % n)

    @zerorpc.stream
    def forever(self):
        i = 0
        while True:
            Svc.produced += 1
            yield i
            i += 1

    def produced_count(self):
        return Svc.produced


endpoint, heartbeat = sys.argv[1], float(sys.argv[2])
server = zerorpc.Server(Svc(), heartbeat=heartbeat)
# "connect": a worker of a client bound at the endpoint.
if len(sys.argv) > 3 and sys.argv[3] == "connect":
    server.connect(endpoint)
else:
    server.bind(endpoint)
print("READY", flush=True)
server.run()
