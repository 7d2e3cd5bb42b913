# SPDX-License-Identifier: MIT
"""phxd through outages: server restarts, close codes, muted heartbeats,
crashes, refused joins, refused handshakes, stale join_refs, and pushes
made while the server is away."""
import json
import os
import shutil
import socket
import threading
import time

from harness import (STREAM_HEAD, Client, Daemon, Skip, TestServer, config, count_stream,
                     metric, read_pauses, run, stream_in_order, test, wait_until)

FAST = "\n".join([
    "heartbeat_interval_ms = 400",
    "reconnect_after_ms = 50 100 200",
    "rejoin_after_ms = 200 400",
    "join_timeout_ms = 1000",
    "auth_retry_ms = 1500",
])
# For streams: a heartbeat's reply waits behind the server's queued
# stream, and on a loaded host 10 MB take longer than FAST's 400 ms to
# pass; these tests are about reading, not about heartbeats.
STREAMING = FAST.replace("heartbeat_interval_ms = 400", "heartbeat_interval_ms = 30000")


def conn(d):
    return d.status()[0]


@test
def server_restart_rejoins_every_topic(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", "rooms:b", extra=FAST))
    d.wait_joined("rooms:a", "rooms:b")
    c = d.client()
    c.ok("join", topic="rooms:runtime")
    ts.stop()
    wait_until(lambda: conn(d)["state"] in ("waiting", "connecting"), what="phxd sees the loss")
    tried = conn(d)["attempts"]
    wait_until(lambda: conn(d)["attempts"] >= tried + 2, what="attempts while the server is away")
    ts.restart()
    d.wait_joined("rooms:a", "rooms:b", "rooms:runtime", timeout=5)
    st = conn(d)
    assert st["reconnects"] >= 1 and st["connects"] >= 2, st
    assert st["last_error"], st
    assert ts.control("stats")["channels"] == 3


@test
def every_close_code_reconnects(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", extra=FAST))
    d.wait_joined("rooms:a")
    for n, code in enumerate([1000, 1001, 1011, 1012], start=2):
        ts.control("close", code=code)
        wait_until(lambda: conn(d)["connects"] >= n, what=f"reconnect after {code}")
        d.wait_joined("rooms:a")
        st = conn(d)
        assert st["last_close_code"] == code, (code, st)
    ts.control("drop")
    wait_until(lambda: conn(d)["connects"] >= 6, what="reconnect after a drop")
    d.wait_joined("rooms:a")


@test
def muted_heartbeats_reconnect_within_two_intervals(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", extra=FAST))
    d.wait_joined("rooms:a")
    wait_until(lambda: ts.control("stats")["heartbeats"] >= 1, what="a heartbeat")
    ts.control("heartbeats", answer=0)
    start = time.monotonic()
    wait_until(lambda: conn(d)["connects"] >= 2, timeout=3, what="reconnect")
    took = time.monotonic() - start
    ts.control("heartbeats", answer=1)
    assert took <= 2 * 0.4 + 0.3, f"reconnected after {took:.2f}s"
    assert "heartbeat" in conn(d)["last_error"], conn(d)
    d.wait_joined("rooms:a")


@test
def channel_crash_rejoins(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:crashy", extra=FAST))
    d.wait_joined("rooms:crashy")
    c = d.client()
    ev = d.client()
    ev.ok("events")
    c.ok("push", topic="rooms:crashy", event="crash", **{"await": False})
    m = ev.line(timeout=5)
    assert m["type"] == "channel" and m["state"] == "errored" and m["retry_in_ms"] == 200, m
    wait_until(lambda: {t["topic"]: t for t in conn(d)["topics"]}["rooms:crashy"]["joins"] == 2,
               what="second join")
    r = c.ok("push", topic="rooms:crashy", event="ping", **{"await": True})
    assert r["response"] == {"pong": "pong"}


@test
def server_stop_is_final(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:stopper", "rooms:other", extra=FAST))
    d.wait_joined("rooms:stopper", "rooms:other")
    c = d.client()
    c.ok("push", topic="rooms:stopper", event="stop", **{"await": False})
    wait_until(lambda: d.topic_states().get("rooms:stopper") == "closed", what="closed")
    # not even a reconnect brings it back, while the other topic rejoins
    ts.control("drop")
    wait_until(lambda: conn(d)["connects"] == 2, what="reconnected")
    d.wait_joined("rooms:other")
    assert d.topic_states()["rooms:stopper"] == "closed"
    assert ts.control("stats")["channels"] == 1
    r = c.request("push", topic="rooms:stopper", event="ping")
    assert r["error"]["code"] == "not_joined", r


@test
def rejected_join_retried_with_backoff(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, extra=FAST))
    ev = d.client()
    ev.ok("events")
    # joined at run time, so the events stream sees every refusal
    r = d.client().request("join", topic="rejected:vault")
    assert r["error"]["code"] == "reply_error", r
    errored = []
    deadline = time.monotonic() + 5
    while len(errored) < 3 and time.monotonic() < deadline:
        m = ev.line(timeout=5)
        if m["type"] == "channel" and m["state"] == "errored":
            errored.append((time.monotonic(), m["retry_in_ms"], m["reason"]))
    assert [e[1] for e in errored] == [200, 400, 400], errored
    assert '"unauthorized"' in errored[0][2], errored
    gap = errored[2][0] - errored[1][0]
    assert 0.35 <= gap <= 0.8, f"second rejoin gap {gap:.3f}s for a 400 ms back-off"


@test
def stale_join_ref_not_delivered(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:s", extra=FAST))
    d.wait_joined("rooms:s")
    c = d.client()
    sub = c.ok("subscribe", topic="rooms:s")["sub"]
    jr = {t["topic"]: t for t in conn(d)["topics"]}["rooms:s"]["join_ref"]
    ts.control("inject", frame=json.dumps(["999999", None, "rooms:s", "stale", {}]))
    ts.control("inject", frame=json.dumps([jr, None, "rooms:s", "current", {}]))
    ts.control("inject", frame=json.dumps([None, None, "rooms:s", "broadcast", {}]))
    got = [c.line(timeout=5)["event"] for _ in range(2)]
    assert got == ["current", "broadcast"], got
    assert conn(d)["stats"]["stale_dropped"] >= 1
    # junk from the server is counted, never fatal
    ts.control("inject", frame="[1,2")
    ts.control("inject", frame='["x"]')
    wait_until(lambda: conn(d)["stats"]["bad_frames"] >= 2, what="bad frames counted")
    assert conn(d)["state"] == "open" and d.alive()
    assert sub


@test
def handshake_403_retries_slowly(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", extra=FAST))
    d.wait_joined("rooms:a")
    ts.control("refuse", status=403)
    ts.control("close", code=1001)
    st = wait_until(lambda: (lambda s: s if s.get("last_http_status") == 403 else None)(conn(d)),
                    what="HTTP 403 in status")
    assert st["state"] == "waiting" and st["retry_in_ms"] > 1000, st
    p = d.ctl("status")
    assert "HTTP 403" in p.stdout, p.stdout
    refused = ts.control("stats")["refused_total"]
    time.sleep(1.0)
    # a slow loop, not a tight one
    assert ts.control("stats")["refused_total"] <= refused + 1
    ts.control("accept")
    d.wait_joined("rooms:a", timeout=4)


@test
def reconnect_gaps_follow_the_schedule(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a",
                         extra="reconnect_after_ms = 100 300 600\nheartbeat_interval_ms = 30000"))
    d.wait_joined("rooms:a")
    ev = d.client()
    ev.ok("events")
    ts.stop()
    attempts = []
    deadline = time.monotonic() + 5
    while len(attempts) < 4 and time.monotonic() < deadline:
        m = ev.line(timeout=5)
        if m["type"] == "connection" and m["state"] == "connecting":
            attempts.append(m["at"])
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    # attempt n waits the n-th delay (after a failed connect of a few ms)
    for gap, want in zip(gaps, [300, 600, 600]):
        assert want <= gap <= want + 150, (gaps, "want", [300, 600, 600])
    ts.restart()
    d.wait_joined("rooms:a", timeout=3)


@test
def push_while_down_is_delivered_or_fails_in_time(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", extra=FAST))
    d.wait_joined("rooms:a")
    ts.stop()
    wait_until(lambda: conn(d)["state"] != "open", what="down")
    # fails after its own timeout
    p = d.ctl("push", "rooms:a", "ping", "--await", "--timeout", "400")
    assert p.returncode == 4 and "timeout" in p.stderr, p
    # waits in the buffer and is delivered once the server is back
    result = []
    t = threading.Thread(target=lambda: result.append(
        d.ctl("push", "rooms:a", "ping", "--await", "--timeout", "8000")))
    t.start()
    wait_until(lambda: conn(d)["buffered_pushes"] == 1, what="the push buffered")
    ts.restart()
    t.join(10)
    assert result and result[0].returncode == 0, result
    assert json.loads(result[0].stdout) == {"pong": "pong"}


@test
def oversize_server_message_closes_with_1009_and_recovers(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:big", extra=FAST + "\nmax_message_bytes = 4096"))
    d.wait_joined("load:big")
    c = d.client()
    c.ok("push", topic="load:big", event="flood", payload={"n": 1, "size": 10000})
    wait_until(lambda: conn(d)["connects"] >= 2, what="reconnect after the oversize message")
    assert "too big" in conn(d)["last_error"] or conn(d)["last_close_code"] == 1009, conn(d)
    d.wait_joined("load:big")
    d.wait_log("larger than max_message_bytes")


def private_dirty_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(l.split()[1]) for l in f if l.startswith("Private_Dirty:"))


@test
def memory_a_burst_took_goes_back_once_it_is_over(w):
    """Bursts to a subscriber: once each is over, phxd's private memory is
    back within 1 MiB of before (every 2 s it gives back what the heap
    holds free, when over 512 KiB). The bench's target allows 2 MiB; a
    burst that left less than the old 2 MiB limit free used to stay."""
    # (AddressSanitizer's allocator keeps freed memory, and under a
    # PHXD_WRAP tool the process measured is the tool)
    if "ASAN_OPTIONS" in os.environ or os.environ.get("PHXD_WRAP"):
        raise Skip("the memory measured is not phxd's own allocator's")
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:burst", head="[phxd]\nclient_buffer_bytes = 268435456\n"))
    d.wait_joined("load:burst")
    sub = d.client()
    sub.ok("subscribe", topic="load:burst")
    before = private_dirty_kib(d.proc.pid)
    # the first leaves about 1.6 MiB free: under a 2 MiB trim limit it stayed
    for n, size in ((2000, 1000), (50000, 64)):
        sub.send_raw(b'{"op":"push","topic":"load:burst","event":"flood",'
                     b'"payload":{"n":%d,"size":%d}}\n' % (n, size))
        got = 0
        while got < n:
            m = sub.line(timeout=10)
            got += m.get("count", 1) if "sub" in m else 0
        peak = private_dirty_kib(d.proc.pid)
        print(f"burst {n} x {size} B: {peak - before} KiB over before at its end")
        wait_until(lambda: private_dirty_kib(d.proc.pid) <= before + 1024, timeout=10,
                   what=f"memory back within 1 MiB of {before} KiB (peak {peak} KiB)")


@test
def server_that_stops_reading_gets_dropped_not_buffered(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:sink", extra=FAST + "\nheartbeat_interval_ms = 0",
                         head="[phxd]\nmax_line_bytes = 2097152\n"))
    d.wait_joined("load:sink")
    ts.control("reading", on=0)
    c = d.client()
    blob = "x" * (1 << 20)
    line = (json.dumps({"op": "push", "topic": "load:sink", "event": "sink",
                        "payload": {"b": blob}}) + "\n").encode()
    # 100 MiB offered to a server that reads nothing: phxd must give up on
    # the socket (64 MiB send queue), not hold it all
    for i in range(100):
        c.send_raw(line)
        if "does not read; closing" in d.log():
            break
    wait_until(lambda: "does not read; closing" in d.log(), timeout=10, what="send queue cap")
    rss_kib = int([l for l in open(f"/proc/{d.proc.pid}/status") if l.startswith("VmRSS")][0]
                  .split()[1])
    print(f"phxd RSS after the cap: {rss_kib} KiB")
    # (AddressSanitizer's quarantine keeps freed memory, and under a
    # PHXD_WRAP tool the process measured is the tool: judge plain runs)
    if "ASAN_OPTIONS" not in os.environ and not os.environ.get("PHXD_WRAP"):
        assert rss_kib < 200 * 1024, f"phxd holds {rss_kib} KiB"
    ts.control("reading", on=1)
    wait_until(lambda: conn(d)["connects"] >= 2, timeout=10, what="reconnect")
    d.wait_joined("load:sink")


@test
def pushes_in_flight_fail_on_disconnect(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", extra=FAST))
    d.wait_joined("rooms:a")
    c = d.client()
    c.send_raw(b'{"id": 7, "op": "push", "topic": "rooms:a", "event": "quicksand", "await": true}\n')
    wait_until(lambda: d.client().ok("status")["ipc"]["pending"] == 1, what="the push in flight")
    ts.control("drop")
    r = c.line(timeout=5)
    assert r["id"] == 7 and r["error"]["code"] == "disconnected", r


@test
def every_push_failure_has_its_code(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:crash", "rooms:stop", extra=FAST + "\npush_buffer = 1"))
    d.wait_joined("rooms:crash", "rooms:stop")
    c = d.client()

    def awaiting(rid, topic):
        c.send_raw((json.dumps({"id": rid, "op": "push", "topic": topic, "event": "quicksand",
                                "await": True, "timeout_ms": 20000}) + "\n").encode())

    awaiting(1, "rooms:crash")
    awaiting(2, "rooms:stop")
    wait_until(lambda: d.client().ok("status")["ipc"]["pending"] == 2, what="two awaits in flight")
    c.ok("push", topic="rooms:crash", event="crash")
    assert c.line(timeout=5)["error"]["code"] == "channel_error"
    c.ok("push", topic="rooms:stop", event="stop")
    assert c.line(timeout=5)["error"]["code"] == "channel_closed"
    # a topic wanted but refused: pushes wait in the buffer (cap 1)
    r = c.request("join", topic="rejected:w")
    assert r["error"]["code"] == "reply_error", r
    c.send_raw(b'{"id": 3, "op": "push", "topic": "rejected:w", "event": "x", "await": true}\n')
    r = c.request("push", topic="rejected:w", event="y", **{"await": True})
    assert r["error"]["code"] == "buffer_full", r
    c.ok("leave", topic="rejected:w")
    r = c.line(timeout=5)
    assert r["id"] == 3 and r["error"]["code"] == "left", r


@test
def a_flood_while_the_loop_is_busy_is_delivered_or_counted(w):
    """Servers are read only when phxd can handle what it reads: while the
    loop parses a 16 MiB request, a flood waits in the socket (the server
    is slowed down), and every message arrives afterwards. An old file's
    receive_queue_bytes still loads, with a warning."""
    ts = TestServer(w)
    head = "[phxd]\nreceive_queue_bytes = 65536\nmax_line_bytes = 33554432\n"
    d = Daemon(w, config(ts.url, "load:f", extra=STREAMING, head=head))
    d.wait_joined("load:f")
    sub_client = d.client()
    sub = sub_client.ok("subscribe", topic="load:f")["sub"]
    n = 4000
    pusher = d.client()
    pusher.send_raw((json.dumps({"id": 1, "op": "push", "topic": "load:f", "event": "flood",
                                 "payload": {"n": n, "size": 400}, "await": True,
                                 "timeout_ms": 60000}) + "\n").encode())
    # meanwhile the loop parses a 16 MiB request
    busy = d.client()
    busy.send_raw(b'{"id":9,"op":"status","pad":"' + b"x" * (16 << 20) + b'"}\n')
    msgs, dropped = count_stream(sub_client, sub, n)
    assert msgs + dropped == n, (msgs, dropped)
    assert pusher.line(timeout=20)["result"]["response"] == {"sent": n}
    assert busy.line(timeout=20)["id"] == 9
    assert "receive_queue_bytes is no longer used; ignored" in d.log()


@test
def a_streaming_server_is_read_in_gathered_passes_in_order_and_its_loss_seen(w):
    """Read moderation: a websocket that brings 16 KiB a millisecond and
    more is left unread for 250 us at a time. Every message still arrives,
    in order; the server's loss in the middle of a stream is still seen;
    a quiet websocket (round trips one at a time) is never paused."""
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:m", extra=STREAMING, head=STREAM_HEAD), log_level="info")
    d.wait_joined("load:m")
    c = d.client()
    for _ in range(300):
        assert "response" in c.ok("push", topic="load:m", event="count", **{"await": True})
    assert read_pauses(d) == 0
    stream_in_order(d, c, "load:m", 50000)
    paused = read_pauses(d)
    c.ok("push", topic="load:m", event="flood", payload={"n": 10 ** 7, "size": 200})
    wait_until(lambda: read_pauses(d) > paused, what="the second stream paused")
    ts.stop()
    wait_until(lambda: conn(d)["state"] in ("waiting", "connecting"),
               what="phxd sees the loss in the middle of a stream")
    ts.restart()
    d.wait_joined("load:m")


@test
def busy_polling_catches_a_closed_loop_and_a_reload_turns_it_off(w):
    """busy_poll_us: phxd polls after its events and reads what comes
    meanwhile without a wake-up (each a catch), a stream still arrives
    whole and in order, and a reload to 0 stops the polling. How many
    reads are caught depends on how busy the host is (test_loop counts
    them where nothing else runs); that some are is the feature."""
    ts = TestServer(w)
    head = STREAM_HEAD + "busy_poll_us = 1000\n"
    d = Daemon(w, config(ts.url, "load:m", extra=STREAMING, head=head))
    d.wait_joined("load:m")
    c = d.client()
    for _ in range(300):
        assert "response" in c.ok("push", topic="load:m", event="count", **{"await": True})
    # Whether the stream is read with pauses depends on phxd keeping up
    # with the server, and a phxd that polls yields its CPU to whatever
    # else runs there, the test's own reader among them (read moderation
    # has its own test: a_streaming_server_is_read_in_gathered_passes...)
    stream_in_order(d, c, "load:m", 20000, paused=False)
    assert metric(d, "phxd_busy_poll_catches_total") > 0
    assert metric(d, "phxd_busy_poll_seconds_total") > 0
    d.write_config(config(ts.url, "load:m", extra=STREAMING, head=STREAM_HEAD))
    c.ok("reload")
    # one more round trip, so that the pass that answered the reload has
    # ended its polling
    assert "response" in c.ok("push", topic="load:m", event="count", **{"await": True})
    caught = metric(d, "phxd_busy_poll_catches_total")
    polled = metric(d, "phxd_busy_poll_seconds_total")
    for _ in range(300):
        assert "response" in c.ok("push", topic="load:m", event="count", **{"await": True})
    assert metric(d, "phxd_busy_poll_catches_total") == caught
    assert metric(d, "phxd_busy_poll_seconds_total") == polled


class DnsBlackhole:
    """A name server on a loopback address that reads queries and never
    answers, and a resolv.conf naming it, bind-mounted for phxd alone."""

    def __init__(self, w, answer=False):
        if os.geteuid() != 0 or not shutil.which("unshare"):
            raise Skip("needs root and unshare for a private /etc/resolv.conf")
        self.addr = "127.0.0.77"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.addr, 53))
        self.sock.settimeout(0.2)
        self.queries = 0
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.conf = os.path.join(w, "resolv.conf")
        with open(self.conf, "w") as f:
            f.write(f"nameserver {self.addr}\noptions timeout:30 attempts:1\n")
        self.wrap = ["unshare", "-m", "sh", "-c",
                     'mount --bind "$0" /etc/resolv.conf && exec "$@"', self.conf]

    def _serve(self):
        while not self.stop:
            try:
                self.sock.recvfrom(4096)
                self.queries += 1
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


@test
def a_name_lookup_that_hangs_stalls_nothing_else(w):
    ts = TestServer(w)
    dns = DnsBlackhole(w)
    try:
        conf = config(ts.url, "rooms:fast", conn="fast") + "\n" + config(
            f"ws://phxd-hang.example:{ts.port}/socket", "rooms:slow", conn="slow")
        d = Daemon(w, conf, wrap=dns.wrap)
        wait_until(lambda: dns.queries >= 1, what="a query to the silent name server")
        c = d.client()
        for _ in range(20):
            r = c.ok("push", conn="fast", topic="rooms:fast", event="ping", **{"await": True})
            assert r["response"] == {"pong": "pong"}
        st = {x["name"]: x for x in d.status()}
        assert st["fast"]["state"] == "open" and st["slow"]["state"] == "connecting", st
        # a lookup that never ends does not hold up the exit
        start = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - start < 4
    finally:
        dns.close()


@test
def a_name_that_does_not_resolve_is_reported_and_retried(w):
    ts = TestServer(w)
    dns = DnsBlackhole(w)
    try:
        # nothing listens on this name server: every lookup fails at once
        with open(dns.conf, "w") as f:
            f.write("nameserver 127.0.0.78\noptions timeout:1 attempts:1\n")
        d = Daemon(w, config(f"ws://phxd-nowhere.example:{ts.port}/socket", "rooms:a",
                             extra="reconnect_after_ms = 100"), wrap=dns.wrap)
        st = wait_until(lambda: (s := d.status()[0])["attempts"] >= 3 and s, timeout=10,
                        what="three attempts")
        assert st["connects"] == 0 and "cannot resolve phxd-nowhere.example" in st["last_error"], st
    finally:
        dns.close()


run()
