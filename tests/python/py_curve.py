"""libzmq's CURVE (through pyzmq) against zrpc, for tests/command/curve_interop.rs.

usage:
  py_curve.py keypair                       print a new key pair (public, secret: Z85 lines)
  py_curve.py public SECRET                 print zmq.curve_public(SECRET)
  py_curve.py dealer EP SERVER_PUB PUB SEC  a CURVE DEALER sends zerorpc add(2, 3), expects OK [5]
  py_curve.py router EP PUB SEC             a CURVE ROUTER answering zerorpc requests like a
                                            server (add, _zerorpc_name); prints READY
  py_curve.py zserver EP PUB SEC            a zerorpc-python Server whose socket is a CURVE server;
                                            prints READY
  py_curve.py zclient EP SERVER_PUB PUB SEC a zerorpc-python Client over CURVE calls add(2, 3)
Each client mode prints PASS, or fails with a traceback.
"""
import sys
import uuid

import msgpack
import zmq

assert zmq.has("curve"), "this pyzmq's libzmq has no CURVE"


def curve_client(sock, server_pub, pub, sec):
    sock.curve_serverkey = server_pub.encode()
    sock.curve_publickey = pub.encode()
    sock.curve_secretkey = sec.encode()


def curve_server(sock, pub, sec):
    sock.curve_server = True
    sock.curve_publickey = pub.encode()
    sock.curve_secretkey = sec.encode()


def request(name, args):
    header = {"message_id": uuid.uuid4().hex.encode(), "v": 3}
    return header["message_id"], msgpack.packb([header, name, args], use_bin_type=True)


mode = sys.argv[1]
if mode == "keypair":
    pub, sec = zmq.curve_keypair()
    print(pub.decode())
    print(sec.decode())
elif mode == "public":
    print(zmq.curve_public(sys.argv[2].encode()).decode())
elif mode == "dealer":
    ep, server_pub, pub, sec = sys.argv[2:6]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    curve_client(sock, server_pub, pub, sec)
    sock.connect(ep)
    mid, payload = request("add", [2, 3])
    sock.send_multipart([b"", payload])
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while True:
        if not poller.poll(5000):
            raise SystemExit("FAIL no reply within 5 s")
        frames = sock.recv_multipart()
        header, name, args = msgpack.unpackb(frames[-1], raw=False)
        if name == "_zpc_hb":
            continue
        assert header["response_to"] == mid, header
        assert name == "OK" and args == [5], (name, args)
        break
    print("PASS dealer", flush=True)
elif mode == "router":
    ep, pub, sec = sys.argv[2:5]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    curve_server(sock, pub, sec)
    sock.bind(ep)
    print("READY", flush=True)
    while True:
        frames = sock.recv_multipart()
        identity, payload = frames[0], frames[-1]
        header, name, args = msgpack.unpackb(payload, raw=False)
        if name.startswith("_zpc_"):
            continue
        if name == "add":
            reply = ("OK", [args[0] + args[1]])
        elif name == "_zerorpc_name":
            reply = ("OK", ["pyzmq-router"])
        else:
            reply = ("ERR", ["NameError", name, ""])
        out = {"message_id": uuid.uuid4().hex.encode(), "v": 3,
               "response_to": header["message_id"]}
        sock.send_multipart([identity, b"", msgpack.packb([out, reply[0], reply[1]],
                                                          use_bin_type=True)])
elif mode == "zserver":
    import zerorpc

    class Svc(object):
        def add(self, a, b):
            return a + b

    ep, pub, sec = sys.argv[2:5]
    server = zerorpc.Server(Svc())
    curve_server(server._events._socket, pub, sec)
    server.bind(ep)
    print("READY", flush=True)
    server.run()
elif mode == "zclient":
    import zerorpc

    ep, server_pub, pub, sec = sys.argv[2:6]
    c = zerorpc.Client(timeout=5)
    curve_client(c._events._socket, server_pub, pub, sec)
    c.connect(ep)
    assert c.add(2, 3) == 5
    print("PASS zclient", flush=True)
else:
    raise SystemExit("unknown mode " + mode)
