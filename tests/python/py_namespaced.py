"""A real zerorpc-python 0.6.3 server whose methods have namespaced names
(zerorpc-python serves a dict of name -> function as is).

usage: py_namespaced.py ENDPOINT
Prints READY once bound, then serves until killed.
"""
import sys

import zerorpc


def add(a, b):
    return a + b


def status():
    return "running"


server = zerorpc.Server({"add": add, "control.status": status})
server.bind(sys.argv[1])
print("READY", flush=True)
server.run()
