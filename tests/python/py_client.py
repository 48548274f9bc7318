"""A real zerorpc-python 0.6.3 client driving a zrpc server.

usage: py_client.py ENDPOINT SCENARIO
Each scenario asserts what it expects and prints `PASS <scenario>`; any
failure raises, so the process exits non-zero with a traceback.
"""
import sys
import time

import gevent
import zerorpc

endpoint, scenario = sys.argv[1], sys.argv[2]


def client(timeout=10, heartbeat=5):
    c = zerorpc.Client(timeout=timeout, heartbeat=heartbeat)
    c.connect(endpoint)
    return c


def expect_error(fn, name, fragment):
    try:
        fn()
    except zerorpc.RemoteError as e:
        assert e.name == name, (e.name, name, e.msg)
        assert fragment in e.msg, (fragment, e.msg)
        assert e.traceback and name in e.traceback, e.traceback
        return e
    raise AssertionError("expected %s" % name)


def calls():
    c = client()
    assert c.add(2, 3) == 5
    assert c.add(-7, 3) == -4
    assert c.hello("py") == "Hello, py!"
    assert c.point(3, 4) == {"x": 3, "y": 4, "label": "3,4"}, c.point(3, 4)
    assert c.nothing() is None


def types():
    c = client()
    values = [
        None, True, False, 0, 1, -1, -32, -33, 127, 128, 255, 256, 65535, 65536,
        2**32, 2**63 - 1, 2**64 - 1, -2**63, 1.5, -0.0, 1e300,
        "", "héllo ✓", "x" * 300, "y" * 70000,
        b"", b"\x00\xff" * 200, b"z" * 70000,
        [], [1, [2, [3, [4]]]], list(range(20)), {}, {"k": {"n": [1, "x"]}},
        {"b": b"bytes", "s": "str"},
    ]
    for v in values:
        r = c.echo(v)
        assert r == v, (v, r)
        assert type(r) is type(v), (type(v), type(r))


def blobs():
    c = client()
    for b in [b"", b"abc", b"\x00\xff" * 1000, b"q" * (1 << 20)]:
        n, back = c.blob_echo(b)
        assert n == len(b) and back == b and type(back) is bytes, (len(b), n)
    # A str where bytes are expected: its UTF-8 bytes.
    assert c.blob_echo("h\u00e9llo") == [6, "h\u00e9llo".encode()]


def errors():
    c = client()
    expect_error(lambda: c.nosuch(), "NameError", "nosuch")
    expect_error(lambda: c.add(1), "TypeError", "takes 2 positional arguments but 1 was given")
    expect_error(lambda: c.add(1, 2, 3), "TypeError", "but 3 were given")
    expect_error(lambda: c.add(1, "x"), "TypeError", "expects arguments")
    expect_error(lambda: c.fail("bad input"), "ValueError", "bad input")
    expect_error(lambda: c.divide(1, 0), "ZeroDivisionError", "division by zero")
    # The server keeps serving after all of that.
    assert c.add(2, 3) == 5


def introspection():
    c = client()
    assert c._zerorpc_name() == "test"
    assert c._zerorpc_ping() == ["pong", "test"]
    names = c._zerorpc_list()
    assert "add" in names and "echo" in names and names == sorted(names), names
    assert c._zerorpc_help("add") == "Add two integers.\n\nReturns their sum."
    assert c._zerorpc_args("add") == [["a", "b"], None, None, None]
    inspect = c._zerorpc_inspect()
    assert inspect["name"] == "test"
    assert inspect["methods"]["add"]["args"] == [{"name": "a"}, {"name": "b"}]
    assert inspect["methods"]["add"]["doc"].startswith("Add two integers.")
    expect_error(lambda: c._zerorpc_help("nosuch"), "KeyError", "nosuch")


def long_call():
    # Heartbeat 1 s, call lasting 3.5 s: only heartbeats keep it alive.
    c = client(timeout=10, heartbeat=1)
    start = time.time()
    assert c.sleep(3.5) == "slept 3.5"
    assert time.time() - start >= 3.4


def concurrent():
    c = client(timeout=30)
    start = time.time()
    jobs = [gevent.spawn(c.sleep, 1.0) for _ in range(50)]
    gevent.joinall(jobs, raise_error=True)
    elapsed = time.time() - start
    assert all(j.value == "slept 1.0" for j in jobs)
    # Run one after another they would take 50 s.
    assert elapsed < 10, "50 concurrent 1 s calls took %.1f s" % elapsed


def streams():
    c = client()
    assert list(c.count(10000)) == list(range(10000))
    assert list(c.count(0)) == []
    got = []
    try:
        for item in c.count_then_fail(3):
            got.append(item)
    except zerorpc.RemoteError as e:
        assert e.name == "ValueError" and e.msg == "failed after 3", (e.name, e.msg)
    else:
        raise AssertionError("expected ValueError after the items")
    assert got == [0, 1, 2], got
    # A slow Python reader: zrpc must wait for its credit.
    items = c.count(300)
    for i in range(300):
        assert next(items) == i
        if i % 100 == 0:
            gevent.sleep(0.2)


def typed():
    # Against a service defined with #[zerorpc::service] (tests/library/typed.rs).
    c = client()
    names = c._zerorpc_list()
    assert "add" in names and "sayHello" in names, names
    inspect = c._zerorpc_inspect()
    assert inspect["name"] == "calc", inspect
    add = inspect["methods"]["add"]
    assert add["doc"] == "Add two integers.\n\nReturns their sum.", add
    assert add["args"] == [{"name": "a"}, {"name": "b"}], add
    hello = inspect["methods"]["sayHello"]
    assert hello["args"] == [{"name": "name"}, {"name": "title", "default": None}], hello
    assert c._zerorpc_help("add").startswith("Add two integers.")
    expect_error(lambda: c.add(1), "TypeError",
                 "add() missing 1 required positional argument: 'b'")
    expect_error(lambda: c.add(1, 2, 3), "TypeError",
                 "add() takes 2 positional arguments but 3 were given")
    expect_error(lambda: c.add(1, "x"), "TypeError", "add() argument 'b' must be i64")
    assert c.add(2, 3) == 5
    assert c.sayHello("Ada") == "Hello, Ada!"
    assert c.sayHello("Ada", "Dr") == "Hello, Dr Ada!"
    assert list(c.count(3)) == [0, 1, 2]


def conformance():
    # Against `zrpc --conformance --bind`: a plain call, a call longer than
    # two heartbeats, and a stream.
    c = client(timeout=20, heartbeat=1)
    c.add(1, 2)
    assert c.slow() == "slow done"
    assert list(c.count(300)) == list(range(300))


def namespaces():
    # A zrpc server with `control` (version 2.0) beside its default service.
    c = client()
    assert c.add(2, 3) == 5
    assert c("control.status") == "running"
    assert c("control.echo", [1, "x"]) == [1, "x"]
    names = c._zerorpc_list()
    assert "control.status" in names and "add" in names, names
    expect_error(lambda: c("status"), "NameError", "status")
    # A namespaced method's parameters, as zerorpc-python's own client
    # reads them (what keyword arguments are placed by).
    assert c._zerorpc_args("control.scale") == [["x", "factor"], None, None, [2]]
    inspect = c._zerorpc_inspect()
    assert inspect["methods"]["control.scale"]["args"] == [
        {"name": "x"}, {"name": "factor", "default": 2}], inspect["methods"]["control.scale"]
    assert c("control.scale", 21, 2) == 42

    # oslo's version rule, the version sent in a header key of the
    # request, as a zerorpc middleware can add it.
    class Version(object):
        def __init__(self, version):
            self.version = version

        def client_before_request(self, event):
            event.header["api_version"] = self.version

    def at(version):
        ctx = zerorpc.Context()
        ctx.register_middleware(Version(version))
        v = zerorpc.Client(timeout=10, heartbeat=5, context=ctx)
        v.connect(endpoint)
        return v

    assert at("2.0")("control.status") == "running"
    e = expect_error(lambda: at("2.1")("control.status"), "UnsupportedVersion", "requires 2.1")
    assert "served at version 2.0" in e.msg, e.msg
    expect_error(lambda: at("2.0").add(1, 2), "UnsupportedVersion", "served at version 1.0")
    assert at("1.0").add(1, 2) == 3


def broker():
    # Through zrpc's broker to zrpc and zerorpc-python workers that share
    # echo, count and sleep (heartbeat 1 s: the long calls outlive two).
    c = client(timeout=20, heartbeat=1)
    for i in range(20):
        assert c.echo(i) == i
    for _ in range(4):
        assert list(c.count(500)) == list(range(500))
    start = time.time()
    jobs = [gevent.spawn(c.sleep, 2.5) for _ in range(2)]
    gevent.joinall(jobs, raise_error=True)
    assert time.time() - start >= 2.4


globals()[scenario]()
print("PASS", scenario, flush=True)
