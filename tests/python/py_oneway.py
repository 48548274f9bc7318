"""zerorpc-python 0.6.3 one-way peers (Pusher/Puller, Publisher/Subscriber).

usage: py_oneway.py ROLE ENDPOINT N [FLAGFILE]
  push ENDPOINT N         connect a Pusher, push record(0..N-1), then done()
  pull ENDPOINT N         bind a Puller; PASS once record(0..N-1) each arrived once
  publish ENDPOINT N FLAG bind a Publisher; publish warmup() until FLAG exists,
                          then news(0..N-1)
  subscribe ENDPOINT N    connect a Subscriber; print WARM at the first
                          warmup(), PASS once news(0..N-1) each arrived once
  notified ENDPOINT N     connect a plain Subscriber to a zrpc Notifier, whose
                          info(ctxt, publisher_id, event_type, payload,
                          metadata) prints WARM at the first "warmup" event
                          type, then NOTE and the five as JSON for others;
                          PASS after N of them
Prints READY when its socket is set up; exits non-zero on any failure or
after 30 s.
"""
import json
import os
import sys

import gevent
import gevent.event
import zerorpc

role, endpoint, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
got = []
done = gevent.event.Event()
warm = []


def finish_when_complete():
    if len(got) >= n:
        gevent.sleep(0.3)  # anything arriving now would be a duplicate
        assert sorted(got) == list(range(n)), "duplicates or strays: %r" % got[:20]
        done.set()


class Sink(object):
    def record(self, i):
        got.append(i)
        finish_when_complete()

    def news(self, i):
        got.append(i)
        finish_when_complete()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        if event_type == "warmup":
            self.warmup()
            return
        print("NOTE " + json.dumps([ctxt, publisher_id, event_type, payload, metadata]), flush=True)
        got.append(len(got))
        finish_when_complete()

    def warmup(self):
        if not warm:
            warm.append(1)
            print("WARM", flush=True)


if role == "push":
    pusher = zerorpc.Pusher()
    pusher.connect(endpoint)
    print("READY", flush=True)
    for i in range(n):
        pusher.record(i)
    gevent.sleep(1.0)  # libzmq flushes in the background
    print("PASS", flush=True)
elif role in ("pull", "subscribe", "notified"):
    if role == "pull":
        peer = zerorpc.Puller(Sink())
        peer.bind(endpoint)
    else:
        peer = zerorpc.Subscriber(Sink())
        peer.connect(endpoint)
    gevent.spawn(peer.run)
    print("READY", flush=True)
    if not done.wait(timeout=30):
        sys.exit("timed out with %d of %d events" % (len(got), n))
    print("PASS", flush=True)
elif role == "publish":
    flag = sys.argv[4]
    publisher = zerorpc.Publisher()
    publisher.bind(endpoint)
    print("READY", flush=True)
    for _ in range(1500):
        if os.path.exists(flag):
            break
        publisher.warmup()
        gevent.sleep(0.02)
    else:
        sys.exit("no subscriber saw a warmup event")
    for i in range(n):
        publisher.news(i)
    gevent.sleep(1.0)
    print("PASS", flush=True)
else:
    sys.exit("unknown role " + role)
