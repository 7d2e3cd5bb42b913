"""Bad input on the socket: every case gets a clear error (or a clean
disconnect) and the daemon keeps serving everyone else."""
import json
import os
import socket
import time

from harness import Client, Daemon, TestServer, config, run, test, wait_until

LIMITS = "[phxd]\nmax_line_bytes = 4096\nclient_buffer_bytes = 65536\n"

CASES = [
    (b"this is not json\n", None, "bad_json"),
    (b"[1, 2, 3]\n", None, "bad_request"),
    (b'"a string"\n', None, "bad_request"),
    (b'{"id": 1}\n', 1, "bad_request"),
    (b'{"id": 2, "op": 42}\n', 2, "bad_request"),
    (b'{"id": 3, "op": "teleport"}\n', 3, "unknown_op"),
    (b'{"id": {"x": 1}, "op": "status"}\n', None, "bad_request"),
    (b'{"id": 4, "op": "push"}\n', 4, "bad_request"),
    (b'{"id": 5, "op": "push", "topic": 7, "event": "x"}\n', 5, "bad_request"),
    (b'{"id": 6, "op": "push", "topic": "rooms:a", "event": "x", "await": "yes"}\n', 6, "bad_request"),
    (b'{"id": 7, "op": "push", "topic": "rooms:a", "event": "x", "timeout_ms": -1}\n', 7, "bad_request"),
    (b'{"id": 8, "op": "join", "topic": "rooms:x", "payload": [1]}\n', 8, "bad_request"),
    (b'{"id": 9, "op": "join"}\n', 9, "bad_request"),
    (b'{"id": 10, "op": "status", "conn": "nope"}\n', 10, "unknown_connection"),
    (b'{"id": 11, "op": "subscribe", "topic": "a*b"}\n', 11, "bad_request"),
    (b'{"id": 12, "op": "subscribe", "topic": "x", "events": "broadcast"}\n', 12, "bad_request"),
    (b'{"id": 13, "op": "unsubscribe", "sub": 999}\n', 13, "no_such_subscription"),
    (b'{"id": 14, "op": "push", "topic": "' + b"t" * 300 + b'", "event": "x"}\n', 14, "too_large"),
    (b'{"id": 15, "op": "presence", "topic": "rooms:none"}\n', 15, "not_joined"),
    (b'{"id": 16, "op": "hello", "version": "1"}\n', 16, "bad_request"),
    (b'{"id": 17, "id": 18, "op": "status"}\n', None, "bad_json"),
    (b'{"id": 19, "op": "push", "topic": "rooms:a", "event": "x", "payload": 1, "payload_b64": "AA=="}\n', 19, "bad_request"),
    (b'\xff\xfe\x00garbage\n', None, "bad_json"),
]


@test
def bad_requests_get_errors_and_the_connection_stays_usable(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head=LIMITS))
    d.wait_joined("rooms:a")
    c = d.client()
    for raw, rid, code in CASES:
        c.send_raw(raw)
        r = c.line(timeout=5)
        assert r["ok"] is False, (raw, r)
        assert r["error"]["code"] == code, (raw, r)
        assert r["id"] == rid, (raw, r)
        assert r["error"]["message"], (raw, r)
    # still usable, and blank lines are ignored
    c.send_raw(b"\n  \n")
    assert c.ok("status")["connections"][0]["name"] == "demo"


@test
def oversize_line_disconnects_only_that_client(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head=LIMITS))
    d.wait_joined("rooms:a")
    other = d.client()
    big = d.client()
    big.send_raw(b'{"id": 1, "op": "push", "payload": "' + b"x" * 5000)
    r = big.line(timeout=5)
    assert r["error"]["code"] == "line_too_long", r
    try:
        while True:
            big.line(timeout=2)
    except EOFError:
        pass
    assert other.ok("status")
    # a complete line over the limit, too
    big2 = d.client()
    big2.send_raw(b"[" + b"1," * 3000 + b"1]\n")
    assert big2.line(timeout=5)["error"]["code"] == "line_too_long"
    assert d.alive() and other.ok("status")


@test
def half_line_then_close_and_binary_junk(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head=LIMITS))
    for payload in [b'{"id": 1, "op": "sta', os.urandom(3000), b"\x00" * 100]:
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.sock)
        s.sendall(payload)
        s.close()
    # a client that vanishes with an answer pending
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)
    s.sendall(b'{"id": 1, "op": "push", "topic": "rooms:a", "event": "quicksand", "await": true, "timeout_ms": 300}\n')
    s.close()
    time.sleep(0.5)
    assert d.alive()
    c = d.client()
    assert c.ok("status")


@test
def slow_reader_is_cut_off_without_slowing_others(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:flood", "rooms:a", head=LIMITS))
    d.wait_joined("load:flood", "rooms:a")
    slow = d.client()
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.ok("subscribe", topic="load:flood")
    fast = d.client()
    sub = fast.ok("subscribe", topic="load:flood")["sub"]
    # rounds the fast reader drains; the slow one never reads
    for _ in range(5):
        n = 150
        fast.ok("push", topic="load:flood", event="flood", payload={"n": n, "size": 1000},
                **{"await": True})
        got = 0
        while got < n:
            m = fast.line(timeout=10)
            if m.get("sub") == sub:
                got += 1
    wait_until(lambda: "read too slowly" in d.log() or "unread" in d.log(),
               what="slow client cut off")
    # the slow one finds the reason at the end of what it was sent
    last = None
    try:
        while True:
            last = slow.line(timeout=2)
    except (EOFError, TimeoutError, ConnectionResetError):
        pass
    assert last is not None and last.get("error", {}).get("code") == "buffer_full", last
    assert d.alive() and fast.ok("status")
    # a cut-off client does not hold memory: a fresh flood reaches a new reader
    again = d.client()
    sub2 = again.ok("subscribe", topic="load:flood")["sub"]
    again.ok("push", topic="load:flood", event="flood", payload={"n": 10, "size": 10},
             **{"await": True})
    assert again.line(timeout=5)["sub"] == sub2


@test
def many_clients_at_once(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head="[phxd]\nmax_clients = 20\n"))
    d.wait_joined("rooms:a")
    clients = [d.client() for _ in range(20)]
    extra = socket.socket(socket.AF_UNIX)
    extra.connect(d.sock)
    extra.settimeout(5)
    data = extra.recv(4096)
    assert b"too many clients" in data, data
    for c in clients:
        c.close()
    time.sleep(0.2)
    assert d.client().ok("status")


run()
