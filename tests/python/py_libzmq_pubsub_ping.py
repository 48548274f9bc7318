"""A libzmq (pyzmq) PUB or SUB with ZMTP heartbeats (ZMQ_HEARTBEAT_IVL 50 ms,
timeout 200 ms) facing a zrpc Subscriber or Publisher.

usage: py_libzmq_pubsub_ping.py sub|pub ENDPOINT SECONDS
Stays connected and silent for SECONDS while libzmq pings, exits if the
connection drops, then prints ALIVE and:
  sub: waits for one zerorpc event and prints PASS and its name;
  pub: publishes a zerorpc event "ping" every 100 ms until killed.
"""
import sys
import time
import uuid

import msgpack
import zmq

role, endpoint, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
ctx = zmq.Context()
sock = ctx.socket(zmq.SUB if role == "sub" else zmq.PUB)
sock.setsockopt(zmq.LINGER, 0)
sock.setsockopt(zmq.HEARTBEAT_IVL, 50)
sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 200)
if role == "sub":
    sock.setsockopt(zmq.SUBSCRIBE, b"")
monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
sock.connect(endpoint)
end = time.time() + seconds
while time.time() < end:
    if monitor.poll(50):
        sys.exit("the connection dropped while idle")
print("ALIVE", flush=True)
if role == "sub":
    if not sock.poll(10000):
        sys.exit("no event within 10 s")
    _header, name, _args = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
    print("PASS", name, flush=True)
else:
    while True:
        ev = [{"message_id": uuid.uuid4().hex.encode(), "v": 3}, "ping", []]
        sock.send(msgpack.packb(ev, use_bin_type=True))
        time.sleep(0.1)
