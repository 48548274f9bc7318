"""zerorpc-python 0.6.3 task-context middleware, both ways, for the context tests.

usage:
  py_context.py server ENDPOINT   a server whose middleware records each
                                  request's header (load_task_context); its
                                  `seen()` returns the last one. Prints READY.
  py_context.py client ENDPOINT   a client whose middleware sends
                                  {"trace": "abc"} (get_task_context), calling
                                  `whoami()` on a zrpc server: it must answer
                                  "abc", read from its request context.
"""
import sys

import gevent
import zerorpc

mode, endpoint = sys.argv[1], sys.argv[2]


class Recorder(object):
    last = {}

    def load_task_context(self, event_header):
        Recorder.last = dict(event_header)


class Sender(object):
    def get_task_context(self):
        return {"trace": "abc"}


class Svc(object):
    def seen(self):
        # Keys as str (a zrpc client sends str keys), values as they came.
        return {k: v for k, v in Recorder.last.items()
                if k not in ("message_id", "v", "response_to")}

    def add(self, a, b):
        return a + b

    def sleep(self, seconds):
        gevent.sleep(seconds)
        return "slept %s" % seconds


if mode == "server":
    ctx = zerorpc.Context()
    ctx.register_middleware(Recorder())
    server = zerorpc.Server(Svc(), context=ctx, heartbeat=1)
    server.bind(endpoint)
    # (Shows that this stream is the one the test reads.)
    print("serving; warnings and tracebacks follow", file=sys.stderr, flush=True)
    print("READY", flush=True)
    server.run()
else:
    ctx = zerorpc.Context()
    ctx.register_middleware(Sender())
    c = zerorpc.Client(context=ctx, timeout=10)
    c.connect(endpoint)
    got = c.whoami()
    assert got == "abc", got
    print("PASS client", flush=True)
