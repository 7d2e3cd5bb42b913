#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Client-scoped joins ("hold":"client"): phxd counts who wants a topic
(the config, runtime joins, connected clients) and leaves it only when
nobody does."""
import os
import signal
import socket
import subprocess
import sys

from harness import PHXCTL, Daemon, TestServer, config, run, test, wait_until


def topic(d, name):
    return next((t for t in d.status()[0]["topics"] if t["topic"] == name), None)


def server_channels(ts):
    return ts.control("stats")["channels"]


HOLDER = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall((json.dumps({"id": 1, "op": "join", "topic": sys.argv[2], "hold": "client"}) + "\n").encode())
buf = b""
while b"\n" not in buf:
    buf += s.recv(4096)
print(buf.decode().strip(), flush=True)
time.sleep(600)
"""


@test
def a_hold_ends_when_its_client_is_killed(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, d.sock, "rooms:held"],
                              stdout=subprocess.PIPE, text=True)
    try:
        answer = holder.stdout.readline()
        assert '"ok":true' in answer, answer
        t = topic(d, "rooms:held")
        assert t["state"] == "joined", t
        assert t["wanted_by"] == {"config": False, "runtime": False, "clients": 1, "outbox": False}, t
        assert server_channels(ts) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    wait_until(lambda: topic(d, "rooms:held") is None, what="the topic left")
    wait_until(lambda: server_channels(ts) == 0, what="the server saw the leave")
    d.wait_log("rooms:held: its last holder")


@test
def every_holder_counts(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url))
    a, b = d.client(), d.client()
    assert a.ok("join", topic="rooms:t", hold="client")["status"] == "ok"
    assert b.ok("join", topic="rooms:t", hold="client")["status"] == "ok"
    assert b.ok("join", topic="rooms:t", hold="client")["status"] == "ok"  # idempotent
    assert topic(d, "rooms:t")["wanted_by"]["clients"] == 2
    a.close()
    wait_until(lambda: topic(d, "rooms:t")["wanted_by"]["clients"] == 1, what="a let go")
    assert topic(d, "rooms:t")["state"] == "joined"
    assert server_channels(ts) == 1
    b.close()
    wait_until(lambda: topic(d, "rooms:t") is None, what="the topic left")
    wait_until(lambda: server_channels(ts) == 0, what="the server saw the leave")


@test
def leave_drops_only_what_the_caller_wanted(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:cfg"))
    d.wait_joined("rooms:cfg")
    a, b = d.client(), d.client()
    # The config wants rooms:cfg: a client's leave keeps it joined.
    a.ok("join", topic="rooms:cfg", hold="client")
    r = a.ok("leave", topic="rooms:cfg")
    assert r == {"status": "ok", "left": False,
                 "wanted_by": {"config": True, "runtime": False, "clients": 0, "outbox": False}}, r
    assert topic(d, "rooms:cfg")["state"] == "joined"
    # Another client's hold outlives a leave: a runtime join is anybody's
    # to end (phxctl join and phxctl leave are different clients), a hold
    # only its client's.
    a.ok("join", topic="rooms:rt", hold="client")
    b.ok("join", topic="rooms:rt")
    r = b.ok("leave", topic="rooms:rt")
    assert r == {"status": "ok", "left": False,
                 "wanted_by": {"config": False, "runtime": False, "clients": 1, "outbox": False}}, r
    # A hold plus the runtime join: the holder's leave drops both and leaves.
    b.ok("join", topic="rooms:rt")
    r = a.ok("leave", topic="rooms:rt")
    assert r == {"status": "ok", "left": True}, r
    assert topic(d, "rooms:rt") is None
    wait_until(lambda: server_channels(ts) == 1, what="only rooms:cfg left on the server")
    b.close()
    # phxctl says why a topic stays.
    p = d.ctl("leave", "rooms:cfg")
    assert p.returncode == 0 and "stays joined" in p.stderr and "config" in p.stderr, p
    a.close()


@test
def a_half_closed_holder_keeps_its_hold_until_it_closes(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url))
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)
    s.sendall(b'{"id":1,"op":"join","topic":"rooms:hc","hold":"client"}\n')
    s.shutdown(socket.SHUT_WR)
    f = s.makefile("rb")
    assert b'"ok":true' in f.readline()
    d.wait_joined("rooms:hc")
    assert topic(d, "rooms:hc")["wanted_by"]["clients"] == 1
    f.close()
    s.close()
    wait_until(lambda: topic(d, "rooms:hc") is None, what="the hold released on close")


@test
def a_hold_on_a_removed_connection_is_forgotten(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url) + config(ts.url, conn="other"))
    c = d.client()
    c.ok("join", conn="other", topic="rooms:gone", hold="client")
    d.write_config(config(ts.url))
    d.ctl("reload")
    wait_until(lambda: len(d.status()) == 1, what="the connection removed")
    c.close()
    wait_until(lambda: d.client().ok("status")["ipc"]["clients"] == 1, what="the client reaped")
    assert d.alive()


@test
def hold_bad_input_and_limits(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, extra="", head="[phxd]\nclient_max_subscriptions = 2\n"))
    c = d.client()
    for bad in ("forever", 1, True, {"x": 1}, ""):
        r = c.request("join", topic="rooms:x", hold=bad)
        assert r["ok"] is False and r["error"]["code"] == "bad_request", (bad, r)
    assert topic(d, "rooms:x") is None
    c.ok("subscribe", topic="rooms:a")
    c.ok("join", topic="rooms:a", hold="client")
    r = c.request("join", topic="rooms:b", hold="client")
    assert r["ok"] is False and r["error"]["code"] == "limit_reached", r
    assert topic(d, "rooms:b") is None
    # hold "daemon" is the default: until a leave.
    c.ok("join", topic="rooms:d", hold="daemon")
    c.close()
    wait_until(lambda: topic(d, "rooms:a") is None, what="rooms:a released")
    assert topic(d, "rooms:d")["wanted_by"] == {"config": False, "runtime": True, "clients": 0, "outbox": False}


@test
def phxctl_subscribe_join_holds_the_topic_for_its_life(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url))
    sub = subprocess.Popen([PHXCTL, "-s", d.sock, "subscribe", "rooms:sj", "--join", "--raw"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (topic(d, "rooms:sj") or {}).get("state") == "joined",
                   what="joined by the subscription")
        assert topic(d, "rooms:sj")["wanted_by"]["clients"] == 1
        d.client().ok("push", topic="rooms:sj", event="broadcast", payload={"n": 1})
        assert sub.stdout.readline() == '{"n":1}\n'
    finally:
        sub.send_signal(signal.SIGKILL)
        sub.wait()
    wait_until(lambda: topic(d, "rooms:sj") is None, what="the topic left after kill -9")
    wait_until(lambda: server_channels(ts) == 0, what="the server saw the leave")
    assert "warning" not in sub.stderr.read()
    # A pattern cannot be held; subscribing to a topic nobody wants warns.
    p = d.ctl("subscribe", "rooms:*", "--join")
    assert p.returncode == 2 and "not a pattern" in p.stderr, p
    p = d.ctl("subscribe", "rooms:nobody", "-t", "200")
    assert p.returncode == 4 and "no connection holds a topic named rooms:nobody" in p.stderr, p
    # The server refusing the join: said, and the subscription goes on.
    p = d.ctl("subscribe", "rejected:x", "--join", "-t", "300")
    assert p.returncode == 4 and "refused to join rejected:x" in p.stderr, p


if __name__ == "__main__":
    run()
