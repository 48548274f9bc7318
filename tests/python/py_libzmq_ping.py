"""A libzmq (pyzmq) DEALER with ZMTP heartbeats (ZMQ_HEARTBEAT_IVL) calling a
zerorpc server by hand.

usage: py_libzmq_ping.py ENDPOINT SECONDS [HEARTBEAT_TIMEOUT_MS]
Calls sleep(SECONDS) while libzmq sends PING every 50 ms; prints PASS if the
reply arrives and the connection never dropped.
"""
import sys
import uuid

import msgpack
import zmq

endpoint, seconds = sys.argv[1], float(sys.argv[2])
hb_timeout = int(sys.argv[3]) if len(sys.argv) > 3 else 0
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
import os
sock.setsockopt(zmq.HEARTBEAT_IVL, int(os.environ.get("IVL", "50")))
if hb_timeout:
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, hb_timeout)
monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
sock.connect(endpoint)

mid = uuid.uuid4().hex.encode()
req = msgpack.packb([{"message_id": mid, "v": 3}, "sleep", [seconds]], use_bin_type=True)
sock.send_multipart([b"", req])
poller = zmq.Poller()
poller.register(sock, zmq.POLLIN)
deadline_ms = int((seconds + 5) * 1000)
while True:
    if not poller.poll(deadline_ms):
        sys.exit("no reply within %d ms" % deadline_ms)
    header, name, args = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
    if header.get("response_to") != mid:
        sys.exit("reply to the wrong id: %r" % header)
    if name == "_zpc_hb":
        continue
    if name != "OK":
        sys.exit("unexpected reply %s %r" % (name, args))
    break
if monitor.poll(0):
    sys.exit("the connection dropped while waiting")
print("PASS", args, flush=True)
