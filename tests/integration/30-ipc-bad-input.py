# SPDX-License-Identifier: MIT
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
    s.sendall(b'{"id": 1, "op": "push", "topic": "rooms:a", "event": "quicksand", "await": true, "timeout_ms": 60000}\n')
    wait_until(lambda: ipc_stats(d)["pending"] == 1, what="the await pending")
    s.close()
    # its await is cancelled with it: nothing is held for a client that is gone
    wait_until(lambda: ipc_stats(d) == {"clients": 1, "pending": 0, "subscriptions": 0,
                                        "queued_bytes": 0, "largest_queue_bytes": 0,
                                        "client_buffer_bytes": 65536, "write_windows": 0},
               what="the vanished client cleaned up")
    assert d.alive()


def ipc_stats(d):
    c = d.client()
    try:
        return c.ok("status")["ipc"]
    finally:
        c.close()


UTF8_TRAPS = [
    # a bad \u escape then a non-ASCII character: the parser quotes the input
    (b'["\\u12\xc3\xa9"]\n', None, "bad_json"),
    (b'{"id": 1, "op": "' + b"o" * 500 + "\u00e9".encode() + b'"}\n', 1, "unknown_op"),
    (b'{"id": 2, "op": "status", "conn": "' + b"c" * 500 + "\u00e9".encode() + b'"}\n', 2,
     "unknown_connection"),
    (b'{"id": 3, "op": "events", "conn": "' + b"c" * 500 + "\u00e9".encode() + b'"}\n', 3,
     "unknown_connection"),
    (b'{"id": 4, "op": "subscribe", "conn": "' + b"c" * 500 + "\u00e9".encode() + b'", "topic": "x"}\n',
     4, "unknown_connection"),
    (b'{"id": 5, "op": "presence", "topic": "' + b"t" * 500 + "\u00e9".encode() + b'"}\n', 5,
     "not_joined"),
    (b'{"id": 6, "op": "push", "topic": "rooms:a", "event": "x", "payload_b64": "A"}\n', 6,
     "bad_request"),
    (b'{"id": 7, "op": "push", "topic": "rooms:a", "event": "x", "payload_b64": "AA=A"}\n', 7,
     "bad_request"),
    (b'{"id": 8, "op": "push", "topic": "rooms:a", "event": "x", "payload_b64": "####"}\n', 8,
     "bad_request"),
]


@test
def error_text_cut_or_quoting_raw_input_is_always_valid_json(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head=LIMITS))
    d.wait_joined("rooms:a")
    c = d.client()
    for raw, rid, code in UTF8_TRAPS:
        c.send_raw(raw)
        r = c.line(timeout=5)  # raises unless the line is valid JSON
        assert r["ok"] is False and r["error"]["code"] == code and r["id"] == rid, (raw[:40], r)
    # a reload that quotes a config value with bytes that are not UTF-8
    with open(d.conf_path, "wb") as f:
        f.write(config(ts.url, "rooms:a", head=LIMITS + "log_level = @\n").encode()
                .replace(b"@", b"\xe9" * 150))
    r = c.request("reload")
    assert r["ok"] is False and r["error"]["code"] == "config_error", r
    assert "log_level" in r["error"]["message"], r
    assert d.alive() and c.ok("status")


@test
def payload_b64_with_or_without_padding(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"))
    d.wait_joined("rooms:a")
    c = d.client()
    for given, back in [("AAE=", "AAE="), ("AAE", "AAE="), ("AAEC", "AAEC"), ("AA", "AA=="), ("", "")]:
        r = c.ok("push", topic="rooms:a", event="bin", payload_b64=given, **{"await": True})
        assert r["response"] == {"binary": back}, (given, r)


@test
def a_half_closed_client_still_gets_its_answers(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"))
    d.wait_joined("rooms:a")
    ts.control("delay", ms=300)
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)
    s.sendall(b'{"id": 1, "op": "push", "topic": "rooms:a", "event": "ping", "await": true}\n'
              b'{"id": 2, "op": "status"}\n')
    s.shutdown(socket.SHUT_WR)  # what printf ... | socat does
    s.settimeout(5)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break  # phxd closes once every request is answered
        data += chunk
    lines = [json.loads(l) for l in data.splitlines()]
    assert [l["id"] for l in lines] == [2, 1], lines
    assert lines[1]["result"]["response"] == {"pong": "pong"}, lines[1]


@test
def per_client_limits(w):
    ts = TestServer(w)
    head = "[phxd]\nclient_max_subscriptions = 3\nclient_max_pending = 2\n"
    d = Daemon(w, config(ts.url, "rooms:a", head=head, extra="max_topics = 3"))
    d.wait_joined("rooms:a")
    c = d.client()
    for i in range(3):
        c.ok("subscribe", topic=f"rooms:{i}")
    r = c.request("events")
    assert r["error"]["code"] == "limit_reached", r
    for i in (1, 2):
        c.send_raw(b'{"id": %d, "op": "push", "topic": "rooms:a", "event": "quicksand", "await": true}\n' % (100 + i))
    wait_until(lambda: ipc_stats(d)["pending"] == 2, what="two awaits pending")
    r = c.request("push", topic="rooms:a", event="ping", **{"await": True})
    assert r["error"]["code"] == "limit_reached", r
    # the config's topic counts: two more fit, the next is refused
    other = d.client()
    other.ok("join", topic="rooms:x")
    other.ok("join", topic="rooms:y")
    r = other.request("join", topic="rooms:z")
    assert r["error"]["code"] == "too_many_topics", r
    # everything the client held goes with it
    c.close()
    wait_until(lambda: ipc_stats(d)["pending"] == 0 and ipc_stats(d)["subscriptions"] == 0,
               what="limits released")


def read_stream(client, sub, until_quiet=1.0):
    """Lines of subscription `sub` until none came for until_quiet seconds:
    (messages, dropped counts reported)."""
    msgs = dropped = 0
    try:
        while True:
            m = client.line(timeout=until_quiet)
            if m.get("sub") != sub:
                continue
            if m.get("type") == "dropped":
                dropped += m["count"]
            else:
                assert m.get("type") == "message", m
                msgs += 1
    except (TimeoutError, socket.timeout):
        pass
    return msgs, dropped


@test
def slow_subscriber_is_bounded_and_told_exactly_what_it_missed(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:flood", "rooms:a", head=LIMITS))
    d.wait_joined("load:flood", "rooms:a")
    slow = d.client()
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_sub = slow.ok("subscribe", topic="load:flood")["sub"]
    fast = d.client()
    sub = fast.ok("subscribe", topic="load:flood")["sub"]
    rounds, n = 5, 150
    # the fast reader drains every round while the slow one reads nothing:
    # what the fast one gets, and what it is told it missed, add up
    for _ in range(rounds):
        fast.ok("push", topic="load:flood", event="flood", payload={"n": n, "size": 1000},
                **{"await": True})
        assert sum(read_stream(fast, sub, until_quiet=0.5)) == n
    wait_until(lambda: "dropping lines" in d.log(), what="drop warning in the log")
    # 750 KB went by; the slow client's queue is capped at 64 KiB
    assert d.alive() and fast.ok("status")
    msgs, dropped = read_stream(slow, slow_sub)
    assert dropped > 0, (msgs, dropped)
    assert msgs + dropped == rounds * n, (msgs, dropped)
    # at most the 64 KiB cap plus what the kernel buffers between the two
    with open("/proc/sys/net/core/wmem_default") as f:
        kernel = 2 * int(f.read()) + 2 * 4096
    assert msgs * 1000 <= 65536 + kernel, (msgs, kernel)
    # still subscribed and served once it keeps up
    fast.ok("push", topic="load:flood", event="flood", payload={"n": 10, "size": 10},
            **{"await": True})
    assert read_stream(slow, slow_sub) == (10, 0)


@test
def client_that_stops_reading_is_cut_off_with_a_reason(w):
    ts = TestServer(w)
    head = LIMITS + "client_stall_ms = 300\n"
    d = Daemon(w, config(ts.url, "load:flood", head=head))
    d.wait_joined("load:flood")
    slow = d.client()
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.ok("subscribe", topic="load:flood")
    other = d.client()
    other.ok("push", topic="load:flood", event="flood", payload={"n": 300, "size": 1000},
             **{"await": True})
    wait_until(lambda: "read none of its" in d.log(), what="stalled client cut off")
    last = None
    try:
        while True:
            last = slow.line(timeout=2)
    except (EOFError, TimeoutError, ConnectionResetError):
        pass
    assert last is not None and last.get("error", {}).get("code") == "buffer_full", last
    assert d.alive() and other.ok("status")
    # a cut-off client holds nothing: a new reader gets a fresh flood whole
    again = d.client()
    sub2 = again.ok("subscribe", topic="load:flood")["sub"]
    again.ok("push", topic="load:flood", event="flood", payload={"n": 10, "size": 10},
             **{"await": True})
    assert read_stream(again, sub2) == (10, 0)


@test
def responses_are_never_dropped_requests_wait_instead(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head=LIMITS))
    d.wait_joined("rooms:a")
    c = d.client()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    n = 1500  # each status answer is ~0.5 KB: 10x the 64 KiB cap
    c.sock.setblocking(True)
    payload = b"".join(b'{"id": %d, "op": "status"}\n' % i for i in range(n))
    c.send_raw(payload)
    ids = [c.line(timeout=10)["id"] for _ in range(n)]
    assert ids == list(range(n)), ids[:10]
    assert d.alive()


@test
def many_clients_at_once(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head="[phxd]\nmax_clients = 20\n"))
    d.wait_joined("rooms:a")
    # twenty served clients (a place may still be held by a client of the
    # start-up checks that phxd has not reaped yet: that one is retried)
    clients = []
    while len(clients) < 20:
        c = d.client()
        try:
            assert c.ok("hello")["version"] == 1
            clients.append(c)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            c.close()
    extra = socket.socket(socket.AF_UNIX)
    extra.connect(d.sock)
    extra.settimeout(5)
    data = extra.recv(4096)
    assert b"too many clients" in data, data
    # each goes, and the place it frees is taken again
    for c in clients[:19]:
        c.close()
    wait_until(lambda: clients[19].ok("status")["ipc"]["clients"] == 1, what="19 clients gone")
    assert d.client().ok("status")["ipc"]["clients"] == 2


# Pushes the fast path reads (ipc_push_fast) beside the same request with an
# unknown member, which the general path reads: the answers must be the same.
PUSHES = [
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","payload":{"a":[1,2.5e3,"x"]},"await":true}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","payload": { "sp" : [ 1 , 2 ] } ,"await":true}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","payload":"\\u00e9\\n","await":true}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","await":true}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","payload":null,"await":true}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"ping"}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"ping","await":false,"timeout_ms":500}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"quicksand","await":true,"timeout_ms":200}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"quicksand","await":true,"timeout_ms":2.5}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"quicksand","await":true,"timeout_ms":86400001}',
    '{"id":N,"op":"push","topic":"rooms:none","event":"x"}',
    '{"id":N,"op":"push","topic":"","event":"x"}',
    '{"id":N,"op":"push","topic":"rooms:a","event":""}',
    '{"id":N,"op":"push","topic":"rooms:\\u0061","event":"echo","payload":1,"await":true}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","conn":"demo","payload":2,"await":true}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","conn":"nope"}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"x","event":"y"}',
    '{"id":N,"op":"push","topic":"rooms:a","event":1}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","await":1}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"' + "e" * 300 + '"}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","payload":{"deep":' + "[" * 500 + "]" * 500 + '},"await":true}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","payload":{"bad":tru},"await":true}',
    '{"id":N,"op":"push","topic":"rooms:a","event":"echo","payload":{}} trailing',
]


@test
def the_fast_and_the_general_push_paths_answer_alike(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"))
    d.wait_joined("rooms:a")
    c = Client(d.sock)
    n = 100
    for text in PUSHES:
        answers = []
        for extra in ("", ',"unknown_member":0'):
            n += 1
            line = text.replace('"id":N', f'"id":{n}')
            if extra and line.rstrip().endswith("}"):
                line = line[:line.rindex("}")] + extra + line[line.rindex("}"):]
            c.send_raw(line.encode() + b"\n")
            r = c.line(timeout=10)
            if r.get("id") is not None:
                assert r["id"] == n, (line, r)
                r["id"] = "N"
            if not r["ok"]:
                r["error"].pop("message", None)
            answers.append(r)
        assert answers[0] == answers[1], (text, answers)
    # the daemon still serves
    assert c.ok("status")["connections"][0]["state"] == "open"


@test
def an_answer_is_the_same_bytes_whatever_its_id(w):
    """Integer ids are written without a tree, others through jansson: the
    rest of the line must not tell them apart."""
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"))
    d.wait_joined("rooms:a")
    c = Client(d.sock)

    def raw_answer(ident, event, payload):
        c.send_raw(('{"id":%s,"op":"push","topic":"rooms:a","event":"%s","payload":%s%s}\n'
                    % (ident, event, payload, ',"await":true' if event == "echo" else ""))
                   .encode())
        while b"\n" not in c.buf:
            c.buf += c.sock.recv(65536)
        raw, c.buf = c.buf.split(b"\n", 1)
        head = b'{"id":' + ident.encode() + b","
        assert raw.startswith(head), (ident, raw)
        return raw[len(head):]

    for event, payload in (("echo", '{"s":"\\u00e9\\"\\n","n":[1,2.5]}'), ("ping", "{}")):
        tails = {ident: raw_answer(ident, event, payload)
                 for ident in ("0", "7", "-3", "9223372036854775807", "-9223372036854775808",
                               '"s"', '"a\\"b"')}
        assert len(set(tails.values())) == 1, tails
    assert tails["0"] == b'"ok":true,"result":{"status":"sent"}}', tails


run()
