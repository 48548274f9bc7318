"""zrpc's client-stream extension (PROTOCOL.md section 9.1) spoken by hand
from Python (pyzmq and msgpack, no zrpc code), against a zrpc server; and a
zerorpc-python client calling a method that takes items the plain way.

usage: py_stream_call.py ENDPOINT SCENARIO
  sum     _zrpc_stream_call ["sum"], 1..5000 under the server's credit,
          STREAM_DONE; expects OK [12502500]
  upper   _zrpc_stream_call ["upper"], 300 words, granting the server
          credit for its answers; expects them upper-cased, in order
  plain   zerorpc.Client().sum(): refused with TypeError, not run
  excess  _zrpc_stream_call ["hold"] (a method that reads one item, then nothing for a
          while): one item more than the first grant is refused with
          ERR ProtocolError
Prints PASS SCENARIO ... on success; exits non-zero saying why otherwise.
"""
import sys
import uuid

import msgpack
import zmq

endpoint, scenario = sys.argv[1], sys.argv[2]


def fail(why):
    sys.exit("FAIL %s: %s" % (scenario, why))


class Call:
    """One stream call on a bare DEALER socket."""

    def __init__(self, method, params):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.mid = uuid.uuid4().hex.encode()
        self.send_event(None, "_zrpc_stream_call", [method] + params)
        self.credit = 0
        self.grants = []

    def send_event(self, response_to, name, args):
        header = {"message_id": uuid.uuid4().hex.encode() if response_to else self.mid, "v": 3}
        if response_to:
            header["response_to"] = response_to
        self.sock.send_multipart([b"", msgpack.packb([header, name, args], use_bin_type=True)])

    def send(self, name, args):
        self.send_event(self.mid, name, args)

    def recv(self, timeout_ms=10000):
        """The next event of the call that is not a heartbeat; credit
        grants are counted, not returned."""
        while True:
            if not self.sock.poll(timeout_ms):
                fail("no event within %d ms (credit %d, grants %r)" % (timeout_ms, self.credit, self.grants))
            header, name, args = msgpack.unpackb(self.sock.recv_multipart()[-1], raw=False)
            if header.get("response_to") != self.mid:
                fail("an event for another call: %r" % (header,))
            if name == "_zpc_hb":
                continue
            if name == "_zpc_more":
                if not (isinstance(args, list) and len(args) == 1 and isinstance(args[0], int) and args[0] > 0):
                    fail("a grant that is not [n > 0]: %r" % (args,))
                self.credit += args[0]
                self.grants.append(args[0])
                return name, args
            return name, args

    def wait_credit(self):
        while self.credit == 0:
            name, args = self.recv()
            if name != "_zpc_more":
                fail("%s %r before any credit for the items" % (name, args))

    def send_items(self, items):
        for item in items:
            self.wait_credit()
            self.credit -= 1
            self.send("STREAM", item)
        self.send("STREAM_DONE", None)


if scenario == "sum":
    n = 5000
    call = Call("sum", [])
    call.send_items(range(1, n + 1))
    while True:
        name, args = call.recv()
        if name == "_zpc_more":
            continue
        if name != "OK" or args != [n * (n + 1) // 2]:
            fail("expected OK [%d], got %s %r" % (n * (n + 1) // 2, name, args))
        break
    if max(call.grants) > 100:
        fail("the server granted %d at once, more than its window" % max(call.grants))
    print("PASS sum", args[0], "grants", len(call.grants), flush=True)
elif scenario == "upper":
    words = ["word%d" % i for i in range(300)]
    call = Call("upper", [])
    got = []
    sent = 0
    granted_answers = False
    done = False
    # Send while there is credit; read whatever comes; grant the server
    # credit for its answers after the first, as zerorpc's readers do.
    while not done:
        while call.credit > 0 and sent < len(words):
            call.credit -= 1
            call.send("STREAM", words[sent])
            sent += 1
            if sent == len(words):
                call.send("STREAM_DONE", None)
        name, args = call.recv()
        if name == "_zpc_more":
            continue
        if name == "STREAM":
            got.append(args)
            if not granted_answers:
                call.send("_zpc_more", [1000])
                granted_answers = True
        elif name == "STREAM_DONE":
            done = True
        else:
            fail("unexpected %s %r" % (name, args))
    if got != [w.upper() for w in words]:
        fail("answers %r..." % (got[:5],))
    print("PASS upper", len(got), flush=True)
elif scenario == "excess":
    call = Call("hold", [])
    call.wait_credit()
    granted = call.credit
    for i in range(granted + 1):
        call.send("STREAM", i)
    while True:
        name, args = call.recv()
        if name == "_zpc_more":
            continue
        if name != "ERR" or args[0] != "ProtocolError":
            fail("expected ERR ProtocolError after %d items on a grant of %d, got %s %r" % (granted + 1, granted, name, args))
        break
    print("PASS excess", args[1], flush=True)
elif scenario == "plain":
    import zerorpc

    c = zerorpc.Client(timeout=10, heartbeat=5)
    c.connect(endpoint)
    try:
        r = c.sum()
        fail("a plain call to sum ran and answered %r" % (r,))
    except zerorpc.RemoteError as e:
        if e.name != "TypeError" or "stream of items" not in e.msg:
            fail("expected a TypeError about streams, got %s: %s" % (e.name, e.msg))
    print("PASS plain", flush=True)
else:
    fail("unknown scenario")
