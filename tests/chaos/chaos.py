# SPDX-License-Identifier: MIT
"""Chaos runs: phxd under faults and hostile load, counting every push.

Each scenario runs a fresh phxd and phxd-testserver, 100 joined topics,
awaited pushers and a fire pusher, while faults are injected in rounds.
Every awaited push must end replied or failed with an explicit error;
one with no answer at all within its timeout (+2 s) is "lost", and any
lost push fails the scenario. Each scenario prints one row:

  scenario  rounds  sent  replied  failed  lost  peak-RSS  recover

recover: the longest time from a fault's end to every topic joined again.
Short form (the test suite): a few rounds each. Long form:
  PHXD_CHAOS=long python3 tests/chaos/chaos.py      (or make chaos)
Figures of a long run are in docs/reliability.md.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import (Client, Daemon, Skip, TestServer, config, count_stream, run,  # noqa: E402
                     test, wait_until)

LONG = os.environ.get("PHXD_CHAOS") == "long"
ROUNDS = 30 if LONG else 3
TOPICS = [f"rooms:c{i}" for i in range(100)]
FAST = "\n".join([
    "heartbeat_interval_ms = 300",
    "reconnect_after_ms = 20 50 100 200",
    "rejoin_after_ms = 100 200 400",
    "join_timeout_ms = 2000",
    "auth_retry_ms = 300",
])
ROWS = []
PUSH_TIMEOUT_MS = 3000


def connect(path):
    """A client as a blocking one would be: a full backlog is waited out."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return Client(path)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def peak_rss_mb(d):
    with open(f"/proc/{d.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def all_joined(d, topics=TOPICS):
    states = d.topic_states()
    return all(states.get(t) == "joined" for t in topics)


class Pushers:
    """Threads pushing awaited pings and fire-and-forget sinks until stopped."""

    def __init__(self, d, n_await=3):
        self.d = d
        self.stop = threading.Event()
        self.sent = self.replied = self.failed = self.lost = self.fired = 0
        self.codes = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._await_loop, args=(i,), daemon=True)
                        for i in range(n_await)]
        self.threads.append(threading.Thread(target=self._fire_loop, daemon=True))
        for t in self.threads:
            t.start()

    def _await_loop(self, seed):
        rng = random.Random(seed)
        c = Client(self.d.sock, timeout=10)
        rid = 0
        while not self.stop.is_set():
            rid += 1
            topic = rng.choice(TOPICS)
            c.send_raw((json.dumps({"id": rid, "op": "push", "topic": topic, "event": "ping",
                                    "await": True, "timeout_ms": PUSH_TIMEOUT_MS}) + "\n").encode())
            with self.lock:
                self.sent += 1
            deadline = time.monotonic() + PUSH_TIMEOUT_MS / 1000 + 2
            answer = None
            while answer is None and time.monotonic() < deadline:
                try:
                    m = c.line(timeout=max(0.01, deadline - time.monotonic()))
                except (TimeoutError, socket.timeout):
                    break
                if m.get("id") == rid:
                    answer = m
            with self.lock:
                if answer is None:
                    self.lost += 1
                elif answer["ok"]:
                    self.replied += 1
                else:
                    self.failed += 1
                    code = answer["error"]["code"]
                    self.codes[code] = self.codes.get(code, 0) + 1
        c.close()

    def _fire_loop(self):
        c = Client(self.d.sock, timeout=10)
        rid = 0
        while not self.stop.is_set():
            rid += 1
            r = c.request("push", topic=random.choice(TOPICS), event="empty_ok")
            with self.lock:
                self.fired += 1 if r["ok"] else 0
            time.sleep(0.002)
        c.close()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(PUSH_TIMEOUT_MS / 1000 + 5)


def chaos_daemon(w, head="", extra=FAST, topics=TOPICS, **kw):
    ts = TestServer(w, "--max-channels", "0")
    d = Daemon(w, config(ts.url, *topics, extra=extra, head=head), **kw)
    wait_until(lambda: all_joined(d, topics), timeout=20, what="every topic joined")
    return ts, d


def report(name, rounds, p, d, recover):
    row = (name, rounds, p.sent if p else 0, p.replied if p else 0, p.failed if p else 0,
           p.lost if p else 0, peak_rss_mb(d), recover)
    ROWS.append(row)
    print(f"  {name:<26} {rounds:>6} {row[2]:>7} {row[3]:>7} {row[4]:>6} {row[5]:>5} "
          f"{row[6]:>8.1f}M {recover * 1000:>8.0f}ms", flush=True)
    if p:
        assert p.lost == 0, f"{p.lost} awaited pushes got no answer at all"
        assert p.sent == p.replied + p.failed + p.lost
        assert p.replied > 0


def fault_rounds(name, w, inject, heal=None, rounds=ROUNDS, extra=FAST):
    ts, d = chaos_daemon(w, extra=extra)
    p = Pushers(d)
    worst = 0.0
    try:
        for _ in range(rounds):
            time.sleep(0.2)
            inject(ts, d)
            if heal:
                time.sleep(0.3)
                heal(ts, d)
            start = time.monotonic()
            wait_until(lambda: all_joined(d), timeout=30, what="every topic joined again")
            worst = max(worst, time.monotonic() - start)
    finally:
        p.finish()
    report(name, rounds, p, d, worst)


@test
def server_killed_and_restarted(w):
    fault_rounds("server killed+restarted", w, lambda ts, d: ts.stop(),
                 heal=lambda ts, d: ts.restart())


@test
def connections_dropped(w):
    fault_rounds("connections dropped", w, lambda ts, d: ts.control("drop"))


@test
def close_codes(w):
    codes = iter([1000, 1001, 1011, 1012, 4000] * ROUNDS)
    fault_rounds("close 1000/1001/1011/1012", w,
                 lambda ts, d: ts.control("close", code=next(codes)))


@test
def heartbeats_muted(w):
    fault_rounds("heartbeats muted", w, lambda ts, d: ts.control("heartbeats", answer=0),
                 heal=heartbeat_timed_out)


def heartbeat_timed_out(ts, d):
    before = heartbeat_timeouts(d)
    wait_until(lambda: heartbeat_timeouts(d) > before, timeout=5, what="a heartbeat timeout")
    ts.control("heartbeats", answer=1)


def heartbeat_timeouts(d):
    return d.status()[0]["stats"]["heartbeat_timeouts"]


@test
def handshakes_refused_and_403(w):
    statuses = iter([None, 403] * ROUNDS)

    def refuse(ts, d):
        st = next(statuses)
        ts.control("refuse", ms=400, **({"status": st} if st else {}))
        ts.control("drop")
    fault_rounds("refused, 403", w, refuse, heal=lambda ts, d: ts.control("accept"))


@test
def sighup_storm(w):
    ts, d = chaos_daemon(w)
    p = Pushers(d)
    extra_topics = [f"rooms:h{i}" for i in range(20)]
    n = 60 if LONG else 15
    try:
        for i in range(n):
            # every other config adds twenty topics; the storm never waits
            d.write_config(config(ts.url, *(TOPICS + (extra_topics if i % 2 else [])),
                                  extra=FAST))
            d.signal(signal.SIGHUP)
            time.sleep(0.02)
        start = time.monotonic()
        wait_until(lambda: d.status()[0] and all_joined(d), timeout=20, what="settled")
        recover = time.monotonic() - start
    finally:
        p.finish()
    assert d.alive()
    report("SIGHUP storm", n, p, d, recover)


@test
def flood_with_non_reading_and_slow_subscribers(w):
    ts, d = chaos_daemon(w, head="[phxd]\nclient_buffer_bytes = 1048576\n",
                         topics=["load:flood"])
    idle = []
    for _ in range(50):
        c = Client(d.sock)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.ok("subscribe", topic="load:flood")
        idle.append(c)
    counter = Client(d.sock)
    sub = counter.ok("subscribe", topic="load:flood")["sub"]
    n = 200000 if LONG else 20000
    start = time.monotonic()
    pusher = d.client()
    pusher.send_raw((json.dumps({"id": 1, "op": "push", "topic": "load:flood", "event": "flood",
                                 "payload": {"n": n, "size": 200}, "timeout_ms": 300000,
                                 "await": True}) + "\n").encode())
    msgs, dropped = count_stream(counter, sub, n)
    assert pusher.line(timeout=60)["ok"] is True
    took = time.monotonic() - start
    assert msgs + dropped == n, (msgs, dropped)
    rss = peak_rss_mb(d)
    ROWS.append(("flood, 50 idle readers", n, n, msgs, dropped, 0, rss, took))
    print(f"  {'flood, 50 idle readers':<26} {n:>6} {n:>7} {msgs:>7} {dropped:>6} {0:>5} "
          f"{rss:>8.1f}M {took * 1000:>8.0f}ms  (replied: delivered to the reading "
          "subscriber, failed: dropped with a count)", flush=True)
    # 50 idle subscribers cost at most their 1 MiB caps, not the flood
    st = d.client().ok("status")["ipc"]
    assert st["largest_queue_bytes"] <= 1048576, st
    for c in idle:
        c.close()


@test
def a_thousand_clients(w):
    ts, d = chaos_daemon(w, topics=TOPICS[:10])
    n = 1000
    start = time.monotonic()
    clients = [connect(d.sock) for _ in range(n)]
    for c in clients:
        c.send_raw(b'{"id":1,"op":"status"}\n')
    answered = sum(1 for c in clients if c.line(timeout=20).get("ok"))
    for c in clients:
        c.close()
    took = time.monotonic() - start
    assert answered == n
    wait_until(lambda: d.client().ok("status")["ipc"]["clients"] == 1, what="all gone")
    rss = peak_rss_mb(d)
    ROWS.append(("1000 clients", 1, n, answered, 0, 0, rss, took))
    print(f"  {'1000 clients':<26} {1:>6} {n:>7} {answered:>7} {0:>6} {0:>5} {rss:>8.1f}M "
          f"{took * 1000:>8.0f}ms", flush=True)


@test
def descriptors_run_out(w):
    if subprocess.run(["prlimit", "--version"], capture_output=True).returncode != 0:
        raise Skip("prlimit is not installed")
    # 40 descriptors: a few for phxd itself, the rest for clients
    ts, d = chaos_daemon(w, topics=TOPICS[:5], wrap=["prlimit", "--nofile=40"])
    held = []
    try:
        for _ in range(40):
            c = connect(d.sock)
            c.send_raw(b'{"id":1,"op":"hello"}\n')
            held.append(c)
        wait_until(lambda: "accept (pausing for 1 s)" in d.log(), what="accept paused")
        served, waiting = [], []
        for c in held:
            try:
                served.append(c) if c.line(timeout=0.3).get("ok") else None
            except (TimeoutError, socket.timeout):
                waiting.append(c)
        assert served and waiting, (len(served), len(waiting))
        start = time.monotonic()
        for c in served:
            c.close()
        # the ones that waited in the backlog are served once descriptors free up
        answered = sum(1 for c in waiting if c.line(timeout=10).get("ok"))
        took = time.monotonic() - start
    finally:
        for c in held:
            c.close()
    assert answered == len(waiting) and d.alive()
    assert d.client().ok("status")["connections"][0]["state"] == "open"
    ROWS.append(("descriptors run out", 1, 40, 40, 0, 0, peak_rss_mb(d), took))
    print(f"  {'descriptors run out':<26} {1:>6} {40:>7} {40:>7} {0:>6} {0:>5} "
          f"{peak_rss_mb(d):>8.1f}M {took * 1000:>8.0f}ms", flush=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@test
def a_huge_request_line_in_small_pieces(w):
    ts, d = chaos_daemon(w, head="[phxd]\nmax_line_bytes = 67108864\n", topics=TOPICS[:1])
    size = (32 if LONG else 8) << 20
    c = Client(d.sock, timeout=60)
    before = cpu_seconds(d.proc.pid)
    start = time.monotonic()
    c.send_raw(b'{"id":1,"op":"status","pad":"')
    piece = b"x" * 4096
    for _ in range(size // len(piece)):
        c.send_raw(piece)
    c.send_raw(b'"}\n')
    r = c.line(timeout=60)
    took = time.monotonic() - start
    cpu = cpu_seconds(d.proc.pid) - before
    assert r["id"] == 1 and r["ok"], r
    ROWS.append(("huge line, 4 KiB pieces", 1, size, 1, 0, 0, peak_rss_mb(d), took))
    print(f"  {'huge line, 4 KiB pieces':<26} {1:>6} {size:>7} {1:>7} {0:>6} {0:>5} "
          f"{peak_rss_mb(d):>8.1f}M {took * 1000:>8.0f}ms  (phxd CPU {cpu * 1000:.0f} ms for "
          f"{size >> 20} MiB: each byte scanned once)", flush=True)


print(f"chaos ({'long' if LONG else 'short'} form): "
      "scenario, rounds, sent, replied, failed explicitly, lost, phxd peak RSS, worst recovery",
      flush=True)
run()
