# SPDX-License-Identifier: MIT
"""A Phoenix server that is wrong on purpose: phxd must not crash, forge
socket lines, lose its status or hold what the server chooses. Every line
read here is parsed on its own, so a split or forged line fails the test."""
import json
import re
import sys

from harness import Daemon, TestServer, config, run, test, wait_until

sys.setrecursionlimit(20000)  # json.loads of the 3000-deep reply


def raw_lines(client, n, timeout=5):
    """The next n lines as bytes, each checked to be exactly one JSON value."""
    out = []
    client.sock.settimeout(timeout)
    while len(out) < n:
        while b"\n" not in client.buf:
            chunk = client.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("phxd closed the connection")
            client.buf += chunk
        raw, client.buf = client.buf.split(b"\n", 1)
        json.loads(raw)  # exactly one value: raises on a split or joined line
        out.append(raw)
    return out


@test
def raw_newlines_in_a_payload_cannot_forge_a_response(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:h"))
    d.wait_joined("rooms:h")
    c = d.client()
    sub = c.ok("subscribe", topic="rooms:h")["sub"]
    # request 1 stays unanswered; the broadcast below spells its response
    c.send_raw(b'{"id": 1, "op": "push", "topic": "rooms:h", "event": "quicksand", '
               b'"await": true, "timeout_ms": 1500}\n')
    frame = ('[null,null,"rooms:h","evil",{"x":\n{"id":1,"ok":true,"result":'
             '{"status":"ok"}}\r\n,"y":\n2}]')
    ts.control("inject", hex=frame.encode().hex())
    first, second = (json.loads(l) for l in raw_lines(c, 2, timeout=5))
    assert first["sub"] == sub and first["event"] == "evil", first
    assert first["payload"] == {"x": {"id": 1, "ok": True, "result": {"status": "ok"}}, "y": 2}
    # the only answer to request 1 is its own timeout
    assert second["id"] == 1 and second["error"]["code"] == "timeout", second


@test
def hostile_replies_reach_the_caller_intact(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:h"))
    d.wait_joined("rooms:h")
    c = d.client()

    def hostile(ident, kind, **extra):
        c.send_raw((json.dumps({"id": ident, "op": "push", "topic": "rooms:h", "event": "hostile",
                                "payload": dict(reply=kind, **extra), "await": True}) + "\n")
                   .encode())
        return raw_lines(c, 1)[0]

    # a string id takes the general path, an integer id the one without a tree
    for ident in ("s", 7):
        line = hostile(ident, "bigint")
        assert b'"n":123456789012345678901234567890' in line, line
        r = json.loads(line)
        assert r["id"] == ident and r["ok"] is True, r
        assert r["result"]["response"]["n"] == 123456789012345678901234567890
        r = json.loads(hostile(ident, "nul"))
        assert r["result"]["response"] == {"s": "a\u0000b"}, r
        r = json.loads(hostile(ident, "newlines"))
        assert r["id"] == ident and r["result"]["response"]["x"]["id"] == 1, r
        # 3000 deep: past the old 128 limit, within what a client can send
        line = hostile(ident, "deep", depth=3000)
        assert line.startswith(b'{"id":' + json.dumps(ident).encode() + b',"ok":true,')
        assert b"[" * 3000 + b"]" * 3000 in line
        r = json.loads(hostile(ident, "bad_status"))
        assert r["id"] == ident and r["ok"] is False, r
        assert r["error"]["code"] == "reply_error", r
        assert r["error"]["status"] == "\ufffd\ufffd", r
        assert r["error"]["response"] == {"binary": "AQI="}, r
    # presence of a topic that has none (this used to leak on every call)
    for _ in range(3):
        assert c.ok("presence", topic="rooms:h") == {"presence": {}, "synced": False}
    assert d.alive() and c.ok("status")


@test
def nesting_beyond_the_limit_is_a_counted_bad_frame(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:h"))
    d.wait_joined("rooms:h")
    c = d.client()
    r = c.request("push", topic="rooms:h", event="hostile", payload={"reply": "deep", "depth": 5000},
                  timeout_ms=500, **{"await": True})
    assert r["error"]["code"] == "timeout", r
    assert d.status()[0]["stats"]["bad_frames"] == 1
    d.wait_log("nesting too deep")


@test
def binary_frames_with_bytes_that_are_not_utf8(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:h"))
    d.wait_joined("rooms:h")
    c = d.client()
    sub = c.ok("subscribe", topic="rooms:h")["sub"]
    topic, event = b"rooms:h", b"ev\xff\xfe\xc3"
    frame = bytes([2, len(topic), len(event)]) + topic + event + b"\x00\x01"
    ts.control("inject", hex=frame.hex(), binary=1)
    m = json.loads(raw_lines(c, 1)[0])
    assert m["sub"] == sub and m["event"] == "ev\ufffd\ufffd\ufffd", m
    assert m["binary"] is True and m["payload"] == "AAE=", m


@test
def close_reason_cut_inside_a_character_keeps_status_whole(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:h", extra="reconnect_after_ms = 60000"))
    d.wait_joined("rooms:h")
    reason = ("é" * 61).encode()[:121] + b"\xff"  # cut mid-character, then junk
    ts.control("close", code=4000, reason_hex=reason.hex())
    st = wait_until(lambda: (s := d.status()) and s[0]["state"] == "waiting" and s,
                    what="disconnected state")[0]
    assert st["name"] == "demo" and st["last_close_code"] == 4000, st
    assert st["last_error"].startswith("server closed with 4000: éé"), st
    ev = d.client()
    ev.ok("events")
    assert ev.ok("status")["connections"][0]["name"] == "demo"


@test
def a_huge_join_refusal_is_kept_short(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, 'rejected:big {"pad": 4000000}', extra="rejoin_after_ms = 60000"))
    topic = wait_until(lambda: {t["topic"]: t for t in d.status()[0]["topics"]}["rejected:big"]
                       ["last_error"] and {t["topic"]: t for t in d.status()[0]["topics"]}
                       ["rejected:big"], what="refusal in status")
    err = topic["last_error"]
    assert isinstance(err, str) and len(err.encode()) < 1200, len(err)
    assert err.startswith('{"reason":"unauthorized","pad":"xxx'), err[:80]
    size = re.search(r"\.\.\. \((\d+) bytes\)$", err)
    assert size and int(size[1]) > 4000000, err[-40:]
    # status stays small and works for every later call
    c = d.client()
    for _ in range(20):
        assert c.ok("status")["connections"][0]["name"] == "demo"


@test
def fragmented_messages_are_reassembled(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:f", extra="max_message_bytes = 1024"))
    d.wait_joined("rooms:f")
    c = d.client()
    sub = c.ok("subscribe", topic="rooms:f")["sub"]
    big = {"x": "y" * 900, "n": [1, 2, 3]}
    text = json.dumps([None, None, "rooms:f", "frag", big]).encode()
    ts.control("inject", hex=text.hex(), fragments=7)
    topic, event = b"rooms:f", b"bin"
    binary = bytes([2, len(topic), len(event)]) + topic + event + bytes(range(256)) * 3
    ts.control("inject", hex=binary.hex(), binary=1, fragments=5)
    ts.control("inject", hex=json.dumps([None, None, "rooms:f", "after", {}]).encode().hex(),
               fragments=2)
    got = [json.loads(l) for l in raw_lines(c, 3)]
    assert [m["event"] for m in got] == ["frag", "bin", "after"], got
    assert got[0]["payload"] == big
    assert got[1]["binary"] is True and \
        got[1]["payload"] == __import__("base64").b64encode(bytes(range(256)) * 3).decode()
    # fragments adding up past max_message_bytes (1 KiB): the socket goes (1009)
    # and phxd comes back
    huge = json.dumps([None, None, "rooms:f", "huge", {"x": "z" * 1400}]).encode()
    ts.control("inject", hex=huge.hex(), fragments=4)
    wait_until(lambda: d.status()[0]["connects"] == 2, what="reconnected after 1009")
    d.wait_log("larger than max_message_bytes")
    d.wait_joined("rooms:f")


run()
