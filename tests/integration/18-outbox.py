#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The durable outbox: a push with "durable" is stored in SQLite before it
is answered, and delivered in order per topic until the server replies,
through outages, restarts of the server and kills of phxd."""
import json
import os
import sqlite3
import subprocess

from harness import Daemon, Skip, TestServer, config, run, test, wait_until


def outbox_conf(w, extra=""):
    return f"[phxd]\noutbox = {os.path.join(w, 'outbox.db')}\n{extra}"


def tallied(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line)["n"] for line in f if line.strip()]


def tally_server(w, *args):
    path = os.path.join(w, "tally.log")
    return TestServer(w, "--tally", path, *args), path


def push(c, topic, n, **extra):
    return c.request("push", topic=topic, event="tally", payload={"n": n}, durable=True, **extra)


@test
def a_durable_push_is_stored_then_delivered_and_reported(w):
    ts, tally = tally_server(w)
    d = Daemon(w, config(ts.url, "load:a", head=outbox_conf(w)))
    d.wait_joined("load:a")
    ev = d.client()
    ev.ok("events")
    c = d.client()
    r = c.ok("push", topic="load:a", event="tally", payload={"n": 1}, durable=True)
    assert r["status"] == "stored" and r["id"] >= 1, r
    line = ev.line(timeout=5)
    while line.get("type") != "outbox":
        line = ev.line(timeout=5)
    assert line["state"] == "delivered" and line["id"] == r["id"] and line["topic"] == "load:a" \
        and line["status"] == "ok" and line["attempts"] == 1, line
    assert tallied(tally) == [1]
    st = c.ok("status")["outbox"]
    assert st["path"] == os.path.join(w, "outbox.db") and st["pending"] == 0 \
        and st["totals"]["delivered"] == 1 and st["sync"] == "full", st
    # nothing is left in the database once delivered (phxd holds it
    # locked while it runs)
    assert d.stop() == 0
    db = sqlite3.connect(os.path.join(w, "outbox.db"))
    assert db.execute("select count(*) from outbox").fetchone()[0] == 0
    db.close()


@test
def pushes_stored_while_the_server_is_down_go_in_order_once_it_is_back(w):
    ts, tally = tally_server(w)
    d = Daemon(w, config(ts.url, "load:a", "load:b", head=outbox_conf(w),
                         extra="reconnect_after_ms = 50"))
    d.wait_joined("load:a", "load:b")
    port = ts.port
    ts.stop()
    wait_until(lambda: d.status()[0]["state"] != "open", what="phxd sees the server gone")
    c = d.client()
    for n in range(200):
        r = push(c, "load:a" if n % 2 else "load:b", n)
        assert r["ok"] and r["result"]["status"] == "stored", r
    listed = c.ok("outbox")
    assert listed["pending"] == 200 and len(listed["messages"]) == 200, listed["pending"]
    assert "Outbox: 200 pending, 0 failed" in d.ctl("status").stdout
    assert [m["id"] for m in listed["messages"]] == sorted(m["id"] for m in listed["messages"])
    assert all(m["state"] == "pending" for m in listed["messages"])
    ts.port = port
    ts.restart()
    wait_until(lambda: len(tallied(tally)) >= 200, 10, "200 delivered")
    got = tallied(tally)
    assert sorted(got) == list(range(200)), got
    # in order per topic
    assert [n for n in got if n % 2] == list(range(1, 200, 2))
    assert [n for n in got if not n % 2] == list(range(0, 200, 2))
    wait_until(lambda: c.ok("outbox")["pending"] == 0, what="outbox empty")


@test
def stored_pushes_survive_kill_9_and_the_outbox_rejoins_their_topic(w):
    ts, tally = tally_server(w)
    # load:rt is joined at run time only: after a restart nobody but the
    # outbox wants it, and the outbox lets it go once its pushes are out
    d = Daemon(w, config(ts.url, head=outbox_conf(w), extra="reconnect_after_ms = 50"))
    c = d.client()
    c.ok("join", topic="load:rt")
    port = ts.port
    ts.stop()
    wait_until(lambda: d.status()[0]["state"] != "open", what="phxd sees the server gone")
    for n in range(50):
        assert push(c, "load:rt", n)["ok"]
    c.close()
    d.kill()
    d2 = Daemon(w, config(ts.url, head=outbox_conf(w), extra="reconnect_after_ms = 50"))
    t = next(t for t in d2.status()[0]["topics"] if t["topic"] == "load:rt")
    assert t["wanted_by"]["outbox"] and not t["wanted_by"]["runtime"], t
    assert d2.ctl("outbox", "-j").stdout.count('"state":"pending"') == 50
    ts.port = port
    ts.restart()
    wait_until(lambda: len(tallied(tally)) >= 50, 10, "50 delivered")
    assert tallied(tally) == list(range(50))
    wait_until(lambda: d2.status()[0]["topics"] == [], 5, "the outbox let the topic go")
    wait_until(lambda: ts.control("stats")["channels"] == 0, 5, "left on the server")


@test
def durable_pushes_reach_topics_on_every_websocket_of_a_sharded_connection(w):
    ts, tally = tally_server(w, "--max-channels", "2")
    topics = [f"load:s{i}" for i in range(5)]
    d = Daemon(w, config(ts.url, *topics, head=outbox_conf(w), extra="max_channels = 2"))
    d.wait_joined(*topics)
    assert len(d.status()[0]["shards"]) == 3
    c = d.client()
    for n in range(100):
        assert push(c, topics[n % 5], n)["ok"]
    wait_until(lambda: len(tallied(tally)) >= 100, 10, "100 delivered")
    got = tallied(tally)
    assert sorted(got) == list(range(100)), got
    for i in range(5):
        assert [n for n in got if n % 5 == i] == list(range(i, 100, 5))


@test
def an_error_reply_is_kept_as_failed_until_retried_or_dropped(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head=outbox_conf(w)))
    d.wait_joined("rooms:a")
    c = d.client()
    sid = c.ok("push", topic="rooms:a", event="error_reply", payload={}, durable=True)["id"]
    wait_until(lambda: c.ok("outbox")["failed"] == 1, what="failed")
    m = c.ok("outbox")["messages"][0]
    assert m["id"] == sid and m["state"] == "failed" and m["attempts"] == 1 and \
        m["last_error"] == {"status": "error", "response": {"reason": "nope"}}, m
    human = d.ctl("outbox").stdout
    assert "0 pending, 1 failed" in human and "error_reply" in human and "nope" in human, human
    assert c.ok("outbox", action="retry", push_id=sid) == {"push_id": sid, "status": "pending"}
    wait_until(lambda: c.ok("outbox")["messages"][0]["attempts"] == 2, what="sent again")
    wait_until(lambda: c.ok("outbox")["failed"] == 1, what="failed again")
    p = d.ctl("outbox", "drop", str(sid))
    assert p.returncode == 0 and p.stdout.strip() == f"{sid} dropped", p
    assert c.ok("outbox")["messages"] == []
    r = c.request("outbox", action="drop", push_id=sid)
    assert r["error"]["code"] == "not_found", r
    assert d.ctl("outbox", "retry", str(sid)).returncode == 5


@test
def a_full_outbox_refuses_and_keeps_what_it_has(w):
    ts, tally = tally_server(w)
    d = Daemon(w, config(ts.url, "load:a", head=outbox_conf(w, "outbox_max_messages = 5\n"),
                         extra="reconnect_after_ms = 50"))
    d.wait_joined("load:a")
    port = ts.port
    ts.stop()
    c = d.client()
    for n in range(5):
        assert push(c, "load:a", n)["ok"]
    r = push(c, "load:a", 5)
    assert r["error"]["code"] == "outbox_full" and "outbox_max_messages = 5" in \
        r["error"]["message"], r
    p = d.ctl("push", "--durable", "load:a", "tally", '{"n":6}')
    assert p.returncode == 5 and "outbox is full" in p.stderr, p
    ts.port = port
    ts.restart()
    wait_until(lambda: len(tallied(tally)) == 5, 10, "the five delivered")
    assert tallied(tally) == list(range(5))
    # room again
    p = d.ctl("push", "--durable", "load:a", "tally", '{"n":7}')
    assert p.returncode == 0 and p.stdout.startswith("stored "), p


@test
def a_damaged_database_is_reported_and_plain_pushes_go_on(w):
    ts = TestServer(w)
    path = os.path.join(w, "outbox.db")
    # a database cut short: the first page of a real one, no more
    db = sqlite3.connect(path)
    db.execute("create table t (x)")
    db.executemany("insert into t values (?)", [("x" * 500,)] * 200)
    db.commit()
    db.close()
    with open(path, "r+b") as f:
        f.truncate(1500)
    d = Daemon(w, config(ts.url, "rooms:a", head=outbox_conf(w)))
    d.wait_joined("rooms:a")
    assert path in d.wait_log("durable pushes are refused")
    c = d.client()
    r = c.request("push", topic="rooms:a", event="ping", payload={}, durable=True)
    assert r["error"]["code"] == "outbox_unavailable" and path in r["error"]["message"], r
    assert "error" in c.ok("status")["outbox"]
    assert "Outbox: unavailable: outbox " + path in d.ctl("status").stdout
    r = c.ok("push", topic="rooms:a", event="ping", payload={}, **{"await": True})
    assert r["status"] == "ok", r
    # a reload tries again, and says so again
    assert d.ctl("reload").returncode == 0
    wait_until(lambda: d.log().count("durable pushes are refused") >= 2,
               what="the reload's report of the damaged outbox")
    # moved away and reloaded: a fresh outbox works
    os.rename(path, path + ".damaged")
    assert d.ctl("reload").returncode == 0
    assert c.ok("push", topic="rooms:a", event="ping", payload={}, durable=True)["status"] == \
        "stored"


@test
def a_full_disk_refuses_durable_pushes_and_keeps_what_was_stored(w):
    fs = os.path.join(w, "small")
    os.makedirs(fs)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", fs],
                       capture_output=True, text=True)
    if m.returncode != 0:
        raise Skip(f"cannot mount a small tmpfs here: {m.stderr.strip()}")
    try:
        ts, tally = tally_server(w)
        d = Daemon(w, config(ts.url, "load:a", head=f"[phxd]\noutbox = {fs}/outbox.db\n",
                             extra="reconnect_after_ms = 50"))
        d.wait_joined("load:a")
        port = ts.port
        ts.stop()
        c = d.client()
        stored, refused = [], []
        for n in range(60):
            r = c.request("push", topic="load:a", event="tally", payload={"n": n, "pad": "x" * 20000},
                          durable=True)
            (stored if r["ok"] else refused).append((n, r))
        assert stored and refused, (len(stored), len(refused))
        assert all(r["error"]["code"] == "outbox_unavailable" and "disk is full" in
                   r["error"]["message"] for _, r in refused), refused[0]
        # phxd goes on; what it stored is delivered once the server is back
        assert c.ok("outbox", limit=0)["pending"] == len(stored)
        ts.port = port
        ts.restart()
        wait_until(lambda: sorted(set(tallied(tally))) == [n for n, _ in stored], 15,
                   "the stored pushes delivered")
        d.stop()
    finally:
        subprocess.run(["umount", "-l", fs])


@test
def an_outbox_that_cannot_be_written_is_reported(w):
    ts = TestServer(w)
    path = os.path.join(w, "no-such-dir", "outbox.db")
    d = Daemon(w, config(ts.url, "rooms:a", head=f"[phxd]\noutbox = {path}\n"))
    d.wait_joined("rooms:a")
    c = d.client()
    r = c.request("push", topic="rooms:a", event="ping", payload={}, durable=True)
    assert r["error"]["code"] == "outbox_unavailable", r
    assert path in r["error"]["message"] and "unable to open" in r["error"]["message"], r
    # without an outbox configured: said so
    plain = os.path.join(w, "plain")
    os.makedirs(plain)
    d2 = Daemon(plain, config(ts.url, "rooms:a", head="[phxd]\noutbox = off\n"))
    r = d2.client().request("push", topic="rooms:a", event="ping", payload={}, durable=True)
    assert r["error"]["code"] == "outbox_unavailable" and "no outbox" in \
        r["error"]["message"], r


@test
def a_second_phxd_on_the_same_outbox_is_told(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head=outbox_conf(w)))
    other = os.path.join(w, "other")
    os.makedirs(other)
    d2 = Daemon(other, config(ts.url, "rooms:a", head=outbox_conf(w)))
    d2.wait_log("database is locked")
    assert d.client().ok("push", topic="rooms:a", event="ping", payload={},
                         durable=True)["status"] == "stored"


@test
def bad_durable_requests_are_refused(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head=outbox_conf(w)))
    d.wait_joined("rooms:a")
    c = d.client()
    cases = [
        (dict(topic="rooms:a", event="e", durable=True, **{"await": True}), "bad_request"),
        (dict(topic="rooms:a", event="e", durable=True, timeout_ms=100), "bad_request"),
        (dict(topic="rooms:a", event="e", durable="yes"), "bad_request"),
        (dict(topic="rooms:a", event="e" * 256, durable=True), "too_large"),
        (dict(topic="rooms:nope", event="e", durable=True), "not_joined"),
    ]
    for fields, code in cases:
        r = c.request("push", **fields)
        assert not r["ok"] and r["error"]["code"] == code, (fields, r)
    for fields in (dict(action="flush"), dict(action="retry"), dict(action="drop", push_id="1"),
                   dict(action="drop", push_id=0), dict(limit=-1), dict(action=7)):
        r = c.request("outbox", **fields)
        assert not r["ok"] and r["error"]["code"] == "bad_request", (fields, r)
    for args in (["push", "--durable", "--await", "rooms:a", "e"],
                 ["push", "--durable", "-t", "100", "rooms:a", "e"],
                 ["outbox", "retry"], ["outbox", "drop", "x"], ["outbox", "purge"],
                 ["outbox", "--durable"]):
        p = d.ctl(*args)
        assert p.returncode == 2, (args, p)
    # a durable notification that cannot be stored reaches the events stream
    ev = d.client()
    ev.ok("events")
    c.send_raw(b'{"op":"push","topic":"rooms:nope","event":"e","durable":true}\n')
    line = ev.line(timeout=5)
    assert line["type"] == "push_failed" and line["code"] == "not_joined", line
    assert c.ok("outbox")["messages"] == []


@test
def clients_push_durably(w):
    ts, tally = tally_server(w)
    d = Daemon(w, config(ts.url, "load:a", head=outbox_conf(w)))
    d.wait_joined("load:a")
    p = d.ctl("push", "--durable", "load:a", "tally", '{"n":1}')
    assert p.returncode == 0 and p.stdout.strip().startswith("stored "), p
    p = d.ctl("push", "--durable", "-l", "load:a", "tally", input='{"n":2}\n{"n":3}\n')
    assert p.returncode == 0, p
    script = (
        "import sys; sys.path.insert(0, sys.argv[2]); import phxd\n"
        "c = phxd.Client(sys.argv[1])\n"
        "i = c.push('load:a', 'tally', {'n': 4}, durable=True)\n"
        "assert isinstance(i, int) and i > 0, i\n"
        "print(c.outbox()['path'])\n")
    py = subprocess.run(["python3", "-c", script, d.sock, PYTHON_DIR], capture_output=True,
                        text=True, timeout=30)
    assert py.returncode == 0 and py.stdout.strip() == os.path.join(w, "outbox.db"), py
    wait_until(lambda: sorted(tallied(tally)) == [1, 2, 3, 4], 5, "four delivered")


PYTHON_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client-lib",
                          "python")

if __name__ == "__main__":
    run()
