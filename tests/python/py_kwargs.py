"""A real zerorpc-python 0.6.3 server whose methods have defaults, for the
keyword-argument tests.

usage: py_kwargs.py ENDPOINT shim|stock
zerorpc-python reports a method's parameters with inspect.getargspec,
which Python 3.11 removed: "stock" serves as released (its _zerorpc_args
and _zerorpc_inspect then fail), "shim" first puts back a getargspec made
of getfullargspec, as a user on Python >= 3.11 would. Prints READY once
bound, then serves until killed.
"""
import inspect
import sys

endpoint, mode = sys.argv[1], sys.argv[2]
if mode == "shim" and not hasattr(inspect, "getargspec"):
    inspect.getargspec = lambda f: inspect.getfullargspec(f)[:4]

import zerorpc  # noqa: E402


class Kw(object):
    def add(self, a, b=10):
        """Add b (10 unless given) to a."""
        return a + b

    def greet(self, name, greeting="Hello", punctuation="!"):
        return "%s, %s%s" % (greeting, name, punctuation)


server = zerorpc.Server(Kw())
server.bind(endpoint)
print("READY", flush=True)
server.run()
