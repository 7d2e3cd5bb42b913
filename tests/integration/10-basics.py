# SPDX-License-Identifier: MIT
"""phxd end to end against phxd-testserver: joins, pushes, replies,
subscriptions, events, phxctl output and exit codes."""
import json
import os
import shutil
import subprocess
import threading
import time

from harness import PHXD, Daemon, Skip, TestServer, config, metric, run, test, wait_until


@test
def config_topics_all_joined(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", "rooms:b {\"k\": 1}", "rooms:c", "rejected:no"))
    d.wait_joined("rooms:a", "rooms:b", "rooms:c")
    st = d.status()[0]
    assert st["state"] == "open" and st["connects"] == 1, st
    topics = {t["topic"]: t for t in st["topics"]}
    assert topics["rejected:no"]["state"] in ("errored", "joining"), topics
    wait_until(lambda: {t["topic"]: t for t in d.status()[0]["topics"]}["rejected:no"]
               ["last_error"] == {"reason": "unauthorized"}, what="join error in status")
    assert ts.control("stats")["channels"] == 3


@test
def push_await_returns_the_reply(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    d.wait_joined("rooms:lobby")
    c = d.client()
    r = c.ok("push", topic="rooms:lobby", event="ping", payload={}, **{"await": True})
    assert r == {"status": "ok", "response": {"pong": "pong"}}, r
    r = c.ok("push", topic="rooms:lobby", event="echo", payload={"x": [1, "é", None]},
             **{"await": True})
    assert r["response"] == {"x": [1, "é", None]}, r
    r = c.request("push", topic="rooms:lobby", event="error_reply", **{"await": True})
    assert r["ok"] is False and r["error"]["code"] == "reply_error", r
    assert r["error"]["status"] == "error" and r["error"]["response"] == {"reason": "nope"}, r
    # connect params reached the server
    r = c.ok("push", topic="rooms:lobby", event="whoami", **{"await": True})
    assert r["response"]["params"]["user"] == "itest", r


@test
def phxctl_push_and_exit_codes(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    d.wait_joined("rooms:lobby")
    p = d.ctl("push", "rooms:lobby", "ping", "{}", "--await")
    assert p.returncode == 0 and json.loads(p.stdout) == {"pong": "pong"}, p
    p = d.ctl("push", "rooms:lobby", "error_reply", "--await")
    assert p.returncode == 1 and "reply_error" in p.stderr and "nope" in p.stderr, p
    p = d.ctl("push", "rooms:lobby", "echo", "-", "--await", input='{"from": "stdin"}')
    assert p.returncode == 0 and json.loads(p.stdout) == {"from": "stdin"}, p
    p = d.ctl("--json", "push", "rooms:lobby", "ping", "--await")
    assert p.returncode == 0 and json.loads(p.stdout) == {"status": "ok",
                                                          "response": {"pong": "pong"}}, p
    p = d.ctl("--json", "push", "rooms:lobby", "error_reply", "--await")
    err = json.loads(p.stdout)
    assert p.returncode == 1 and err["code"] == "reply_error" and err["response"] == \
        {"reason": "nope"} and "id" not in err, p
    p = d.ctl("push", "rooms:lobby", "ping")
    assert p.returncode == 0 and p.stdout.strip() == "sent", p
    p = d.ctl("push", "rooms:nowhere", "ping")
    assert p.returncode == 5 and "not_joined" in p.stderr, p
    p = d.ctl("push", "rooms:lobby", "quicksand", "--await", "--timeout", "300")
    assert p.returncode == 4 and "timeout" in p.stderr, p
    p = d.ctl("push", "rooms:lobby")
    assert p.returncode == 2, p
    p = d.ctl("push", "rooms:lobby", "x", "{bad json")
    assert p.returncode == 2 and "not JSON" in p.stderr, p
    p = d.ctl("frobnicate")
    assert p.returncode == 2, p
    p = d.ctl("-s", w + "/nothing.sock", "status")
    assert p.returncode == 3 and "cannot reach phxd" in p.stderr, p
    p = d.ctl("-C", "nope", "status")
    assert p.returncode == 2 and "unknown_connection" in p.stderr, p
    p = d.ctl("status")
    assert p.returncode == 0 and "rooms:lobby" in p.stdout and "joined" in p.stdout, p


@test
def join_and_leave_at_run_time(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url))
    p = d.ctl("join", "rooms:rt", '{"hello": 1}')
    assert p.returncode == 0, p
    assert json.loads(p.stdout) == {"joined": "rooms:rt", "params": {"hello": 1}}, p
    p = d.ctl("join", "rejected:x")
    assert p.returncode == 1 and "unauthorized" in p.stderr, p
    p = d.ctl("leave", "rooms:rt")
    assert p.returncode == 0, p
    assert "rooms:rt" not in d.topic_states()
    p = d.ctl("leave", "rooms:rt")
    assert p.returncode == 5 and "not_joined" in p.stderr, p
    wait_until(lambda: ts.control("stats")["channels"] == 0, what="server sees the leave")


@test
def a_wide_fan_out_holds_its_writes_only_when_messages_outrun_them(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"))
    d.wait_joined("rooms:a")
    clients = [d.client() for _ in range(40)]  # 32 or more make a pass wide
    first = [c.ok("subscribe", topic="rooms:a")["sub"] for c in clients]

    def broadcast(n):
        r = ts.control("broadcast", topic="rooms:a", event="broadcast", payload=json.dumps({"n": n}))
        assert r["delivered"] == 1, r

    def windows():
        return metric(d, "phxd_ipc_write_windows_total")

    # each message reaches every client before the next is sent: every
    # pass carries one line a client, and holding the next would only
    # delay it
    for n in range(5):
        broadcast(n)
        for c, sub in zip(clients, first):
            m = c.line(timeout=5)
            assert (m["sub"], m["payload"]) == (sub, {"n": n}), m
    assert windows() == 0
    # two subscriptions a client: a message is two lines a client in one
    # pass, more than the pass could write one at a time
    second = [c.ok("subscribe", topic="rooms:a")["sub"] for c in clients]
    broadcast(5)
    for c, subs in zip(clients, zip(first, second)):
        got = [c.line(timeout=5) for _ in range(2)]
        assert sorted(m["sub"] for m in got) == sorted(subs), got
        assert all(m["payload"] == {"n": 5} for m in got), got
    assert windows() >= 1
    assert d.client().ok("status")["ipc"]["write_windows"] == windows()


@test
def one_client_two_subscriptions_each_line_tagged_with_its_own(w):
    """Lines of two subscriptions of one client, queued together while it
    does not read, each carry their own subscription's id."""
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", "rooms:b"))
    d.wait_joined("rooms:a", "rooms:b")
    s = d.client()
    exact = s.ok("subscribe", topic="rooms:a")["sub"]
    pattern = s.ok("subscribe", topic="rooms:*")["sub"]
    c = d.client()
    topics = ["rooms:a", "rooms:b", "rooms:b", "rooms:a"] * 25
    for i, topic in enumerate(topics):
        c.ok("push", topic=topic, event="broadcast", payload={"i": i}, **{"await": True})
    want = []
    for i, topic in enumerate(topics):
        want += [(exact, i)] if topic == "rooms:a" else []
        want += [(pattern, i)]
    got = [s.line(timeout=5) for _ in want]
    assert [(m["sub"], m["payload"]["i"]) for m in got] == want, got[:6]
    assert all(m["topic"] == topics[m["payload"]["i"]] for m in got)


@test
def two_subscribers_and_a_pattern(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", "rooms:b", "load:c"))
    d.wait_joined("rooms:a", "rooms:b", "load:c")
    s1, s2, pat, ev = d.client(), d.client(), d.client(), d.client()
    sub1 = s1.ok("subscribe", topic="rooms:a")["sub"]
    sub2 = s2.ok("subscribe", topic="rooms:a", events=["broadcast"])["sub"]
    subp = pat.ok("subscribe", topic="rooms:*")["sub"]
    c = d.client()
    c.ok("push", topic="rooms:a", event="broadcast", payload={"n": 1}, **{"await": True})
    c.ok("push", topic="rooms:b", event="broadcast", payload={"n": 2}, **{"await": True})
    assert ts.control("broadcast", topic="load:c", event="broadcast", payload="{}")["delivered"] == 1
    c.ok("push", topic="rooms:a", event="push to me", **{"await": False})
    m1 = s1.line(timeout=5)
    assert m1 == {"sub": sub1, "type": "message", "conn": "demo", "topic": "rooms:a",
                  "event": "broadcast", "payload": {"n": 1}}, m1
    assert s1.line(timeout=5)["event"] == "foo"
    m2 = s2.line(timeout=5)
    assert m2["sub"] == sub2 and m2["payload"] == {"n": 1}
    got = [pat.line(timeout=5) for _ in range(3)]
    assert [(m["topic"], m["event"]) for m in got] == \
        [("rooms:a", "broadcast"), ("rooms:b", "broadcast"), ("rooms:a", "foo")], got
    assert all(m["sub"] == subp for m in got)
    # the event filter kept "foo" away from s2: the next line it gets is
    # the answer to a request made after "foo" was delivered everywhere
    assert s2.request("status")["ok"] is True
    assert s2.pending_lines == [], s2.pending_lines
    # phxctl subscribe prints one object per line
    out = []
    t = threading.Thread(target=lambda: out.append(
        d.ctl("subscribe", "rooms:b", "--count", "2", timeout=10)))
    before = c.ok("status")["ipc"]["subscriptions"]
    t.start()
    wait_until(lambda: c.ok("status")["ipc"]["subscriptions"] == before + 1,
               what="phxctl subscribed")
    c.ok("push", topic="rooms:b", event="broadcast", payload={"i": 1}, **{"await": True})
    c.ok("push", topic="rooms:b", event="broadcast", payload={"i": 2}, **{"await": True})
    t.join(10)
    lines = out[0].stdout.strip().split("\n")
    assert [json.loads(x)["payload"] for x in lines] == [{"i": 1}, {"i": 2}], out[0]
    r = s1.request("unsubscribe", sub=sub1)
    assert r["ok"], r
    r = s1.request("unsubscribe", sub=sub1)
    assert r["error"]["code"] == "no_such_subscription", r


@test
def binary_push_round_trip(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:bin"))
    d.wait_joined("rooms:bin")
    c = d.client()
    sub = c.ok("subscribe", topic="rooms:bin")["sub"]
    # the test server answers a binary push with a binary push and a binary reply
    r = c.ok("push", topic="rooms:bin", event="blob", payload_b64="AAEC/w==", **{"await": True})
    assert r["response"] == {"binary": "AAEC/w=="}, r
    m = c.line(timeout=5)
    assert m == {"sub": sub, "type": "message", "conn": "demo", "topic": "rooms:bin",
                 "event": "bin_push", "binary": True, "payload": "AAEC/w=="}, m
    r = c.request("push", topic="rooms:bin", event="x", payload_b64="***")
    assert r["error"]["code"] == "bad_request", r


@test
def events_stream_reports_state_changes(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:e"))
    d.wait_joined("rooms:e")
    c = d.client()
    sub = c.ok("events")["sub"]
    ts.control("close", code=1001)
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        m = c.line(timeout=5)
        assert m["sub"] == sub
        seen.append((m["type"], m["state"]))
        if ("channel", "joined") in seen:
            break
    assert ("connection", "disconnected") in seen, seen
    assert ("connection", "connected") in seen, seen
    assert seen.index(("connection", "disconnected")) < seen.index(("channel", "joined")), seen


@test
def auth_token_params_and_headers_reach_the_server(w):
    ts = TestServer(w)
    with open(f"{w}/token", "w") as f:
        f.write("s3cr3t-token/with+chars\n")
    with open(f"{w}/device", "w") as f:
        f.write("sensor 7")
    d = Daemon(w, config(ts.url, "rooms:auth",
                         extra=f"auth_token_file = {w}/token\nparam.device_file = {w}/device\n"
                               "param.headers = X-Client,X-Trace\n"
                               "header.X-Client = phxd itest\nheader.X-Trace = abc-123"))
    d.wait_joined("rooms:auth")
    r = d.client().ok("push", topic="rooms:auth", event="whoami", **{"await": True})
    assert r["response"]["auth_token"] == "s3cr3t-token/with+chars", r
    assert r["response"]["params"]["device"] == "sensor 7", r
    assert r["response"]["headers"] == {"X-Client": "phxd itest", "X-Trace": "abc-123"}, r


@test
def presence_kept_and_resynced(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "presence:lobby"))
    d.wait_joined("presence:lobby")
    c = d.client()
    wait_until(lambda: list(c.ok("presence", topic="presence:lobby")["presence"]) == ["itest"],
               what="own presence")
    # another user joins, through a second phxd
    w2 = w + "/second"
    os.mkdir(w2)
    d2 = Daemon(w2, config(ts.url, "presence:lobby").replace("param.user = itest",
                                                              "param.user = bob"))
    d2.wait_joined("presence:lobby")
    wait_until(lambda: sorted(c.ok("presence", topic="presence:lobby")["presence"]) ==
               ["bob", "itest"], what="bob's join seen")
    d2.stop()
    wait_until(lambda: list(c.ok("presence", topic="presence:lobby")["presence"]) == ["itest"],
               what="bob's leave seen")
    # after a reconnect the list is rebuilt from the new presence_state
    ts.control("drop")
    wait_until(lambda: d.status()[0]["connects"] == 2, what="reconnect")
    d.wait_joined("presence:lobby")
    r = wait_until(lambda: (lambda p: p if p["synced"] and list(p["presence"]) == ["itest"]
                            else None)(c.ok("presence", topic="presence:lobby")),
                   what="presence re-synced")
    metas = r["presence"]["itest"]["metas"]
    assert len(metas) == 1, r


@test
def hello_and_version(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url))
    c = d.client()
    r = c.ok("hello", version=1)
    assert r["version"] == 1 and r["connections"] == ["demo"], r
    r = c.request("hello", version=2)
    assert r["error"]["code"] == "version_mismatch" and r["error"]["version"] == 1, r


@test
def values_longer_than_a_config_line_come_from_files(w):
    """A 4000-byte bearer token (header.NAME_file), a 1500-byte connect param
    (param.NAME_file) and a 6000-byte join payload (join_file) reach the
    server; a config line holds at most 199 bytes."""
    ts = TestServer(w)
    files = {"bearer": "Bearer " + "j" * 3993 + "\n", "param": "p" * 1500 + "\n",
             "payload": json.dumps({"blob": "b" * 6000, "n": 1})}
    for name, text in files.items():
        with open(os.path.join(w, name), "w") as f:
            f.write(text)
    d = Daemon(w, config(ts.url.replace("/socket", "/socket?headers=Authorization,X-Short"),
                         extra=f"header.Authorization_file = {w}/bearer\n"
                               f"header.X-Short = plain\n"
                               f"param.big_file = {w}/param\n"
                               f"join_file = rooms:big {w}/payload"))
    d.wait_joined("rooms:big")
    c = d.client()
    who = c.ok("push", topic="rooms:big", event="whoami", **{"await": True})["response"]
    assert who["headers"] == {"Authorization": files["bearer"].strip(), "X-Short": "plain"}, \
        {k: len(v) for k, v in who["headers"].items()}
    assert who["params"]["big"] == "p" * 1500
    joined = c.ok("join", topic="rooms:big")["response"]
    assert joined["params"] == {"blob": "b" * 6000, "n": 1}, len(json.dumps(joined))


@test
def file_values_that_cannot_be_used_are_refused_by_name(w):
    big = os.path.join(w, "big")
    with open(big, "w") as f:
        f.write("x" * 60000)
    with open(os.path.join(w, "list"), "w") as f:
        f.write("[1, 2]")
    cases = {
        f"join_file = rooms:a {w}/missing": "join_file: cannot read",
        "join_file = rooms:a": "join_file: TOPIC PATH",
        f"join_file = rooms:a {w}/list": "join_file: payload of rooms:a is not a JSON object",
        f"header.X-Token_file = {w}/missing": "header.X-Token_file: cannot read",
        f"header.Bad Name_file = {big}": "not a valid HTTP header name",
        f"param.a_file = {big}\nheader.B_file = {big}": "the websocket handshake would take",
    }
    for extra, why in cases.items():
        conf = os.path.join(w, "phxd.conf")
        with open(conf, "w") as f:
            f.write(config("ws://127.0.0.1:1/socket", extra=extra))
        p = subprocess.run([PHXD, "--check-config", "-c", conf], capture_output=True, text=True)
        assert p.returncode == 1 and why in p.stderr, (extra, p.stderr)


@test
def phxctl_says_its_version_without_a_daemon(w):
    p = subprocess.run([os.path.join(os.path.dirname(PHXD), "phxctl"), "--version"],
                       capture_output=True, text=True, env={**os.environ,
                                                            "PHXD_SOCKET": f"{w}/none"})
    v = subprocess.run([PHXD, "--version"], capture_output=True, text=True).stdout.split()[-1]
    assert p.returncode == 0 and p.stdout == f"phxctl {v}\n", (p, v)


@test
def phxctl_check_is_a_health_exit_status(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:ok", "rooms:ok2")
               + config("ws://127.0.0.1:1/socket", conn="down"))
    d.wait_joined("rooms:ok", "rooms:ok2")
    p = d.ctl("-C", "demo", "check")
    assert p.returncode == 0 and p.stdout == "ok: 1 connection open, 2 topics joined\n", p
    p = d.ctl("check")
    assert p.returncode == 1 and p.stdout.startswith("connection down is "), p
    d.client().request("join", topic="rejected:no", conn="demo")
    p = d.ctl("-C", "demo", "check")
    assert p.returncode == 1 and "topic rejected:no on demo is errored" in p.stdout, p
    d.client().ok("leave", topic="rejected:no", conn="demo")
    assert d.ctl("-C", "demo", "check").returncode == 0
    ts.stop()
    wait_until(lambda: d.ctl("-C", "demo", "check").returncode == 1, what="check failing")
    d.stop()
    p = d.ctl("check")
    assert p.returncode == 3, p


@test
def phxctl_push_lines_pipelines_a_shell_pipe(w):
    """push -l: 100,000 stdin lines, each one message, every one counted by
    the server; bad lines are named and the rest still go."""
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:lines"), log_level="info")
    d.wait_joined("load:lines")
    n = 100000
    lines = "".join(f'{{"i":{i}}}\n' for i in range(n))
    t0 = time.monotonic()
    p = d.ctl("push", "-l", "load:lines", "sink", input=lines, timeout=120)
    took = time.monotonic() - t0
    assert p.returncode == 0 and p.stdout == "", p
    assert f"{n} lines sent, 0 failed" in p.stderr, p.stderr
    c = d.client()
    counted = wait_until(lambda: (r := c.ok("push", topic="load:lines", event="count",
                                            **{"await": True})["response"]["received"]) >= n
                         and r, timeout=30, what="the server counting every line")
    assert counted == n, counted
    print(f"    push -l: {n} lines in {took:.2f} s ({n / took:,.0f}/s)")
    # awaited, with a line that is not JSON and a blank one
    p = d.ctl("push", "-l", "--await", "load:lines", "count", input='{}\nnot json\n\n{}\n')
    assert p.returncode == 2 and "line 2 is not JSON" in p.stderr, p
    assert "2 lines sent, 0 failed" in p.stderr and len(p.stdout.splitlines()) == 2, p
    # -q: quiet when all went
    p = d.ctl("-q", "push", "-l", "load:lines", "sink", input='{"a":1}\n')
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p
    p = d.ctl("push", "-l", "rooms:nowhere", "x", input='{}\n{}\n')
    assert p.returncode == 5 and "2 failed (first: not_joined" in p.stderr, p


@test
def phxctl_subscribe_raw_prints_payloads_and_quiet_prints_nothing(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:raw"))
    d.wait_joined("rooms:raw")
    sub = subprocess.Popen([os.path.join(os.path.dirname(PHXD), "phxctl"), "-s", d.sock,
                            "subscribe", "rooms:raw", "--raw", "--count", "2"],
                           stdout=subprocess.PIPE)
    c = d.client()
    wait_until(lambda: c.ok("status")["ipc"]["subscriptions"] >= 1, what="the subscription")
    c.ok("push", topic="rooms:raw", event="broadcast", payload={"x": [1, "two"]},
         **{"await": True})
    c.ok("push", topic="rooms:raw", event="blob", payload_b64="AAEC/w==", **{"await": True})
    out, _ = sub.communicate(timeout=10)
    assert sub.returncode == 0 and out == b'{"x":[1,"two"]}\n\x00\x01\x02\xff\n', out
    p = d.ctl("-q", "push", "rooms:raw", "ping", "--await")
    assert p.returncode == 0 and p.stdout == "", p
    p = d.ctl("-q", "check")
    assert p.returncode == 0 and p.stdout == "", p
    p = d.ctl("-q", "push", "rooms:raw", "error_reply", "--await")
    assert p.returncode == 1 and "reply_error" in p.stderr, p


@test
def phxctl_subscribe_to_a_topic_nobody_holds_warns(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:held"))
    d.wait_joined("rooms:held")
    for topic, warned in (("rooms:nobody", True), ("rooms:held", False), ("rooms:*", False),
                          ("other:*", True)):
        p = d.ctl("subscribe", topic, "--timeout", "200")
        assert p.returncode == 4, p  # nothing came: --timeout of silence
        assert ("warning: no connection holds" in p.stderr) == warned, (topic, p.stderr)


@test
def phxctl_refuses_options_its_command_does_not_take(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    for args, named in ((["status", "--raw"], "--raw is not an option of status"),
                        (["push", "rooms:lobby", "x", "--follow"],
                         "--follow is not an option of push"),
                        (["events", "--join"], "--join is not an option of events"),
                        (["leave", "rooms:lobby", "-l"], "--lines is not an option of leave"),
                        (["subscribe", "rooms:lobby", "--await"],
                         "--await is not an option of subscribe"),
                        (["subscribe", "rooms:lobby", "-n", "0"], "--count wants a number"),
                        (["join"], "usage: phxctl join TOPIC [PARAMS]"),
                        (["check", "extra"], "usage: phxctl check"),
                        (["teleport"], "unknown command 'teleport'")):
        p = d.ctl(*args)
        assert p.returncode == 2 and named in p.stderr, (args, p.stderr)


@test
def a_push_without_an_id_is_a_notification(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby", "load:n"))
    d.wait_joined("rooms:lobby", "load:n")
    ev = d.client()
    ev.ok("events")
    c = d.client()
    before = c.ok("push", topic="load:n", event="count", **{"await": True})["response"]["received"]
    # never answered: the status answer is the next line this client reads
    for i in range(50):
        c.send_raw(b'{"op":"push","topic":"load:n","event":"sink","payload":{"i":%d}}\n' % i)
        c.send_raw(b'{"op":"push","topic":"load:n","event":"sink","payload":{},"x":1}\n')
    c.send_raw(b'{"id":"s","op":"status"}\n')
    assert c.line()["id"] == "s"
    wait_until(lambda: c.ok("push", topic="load:n", event="count", **{"await": True})
               ["response"]["received"] - before == 100, what="the server counted 100 sinks")
    # failures, whatever they are, reach the events stream
    c.send_raw(b'{"op":"push","topic":"rooms:none","event":"x"}\n')
    c.send_raw(b'{"op":"push","topic":"rooms:lobby","event":"x","conn":"nope"}\n')
    c.send_raw(b'{"op":"push","topic":"rooms:lobby"}\n')
    c.send_raw(b'{"op":"push","topic":"rooms:lobby","event":"e","payload_b64":"%%%"}\n')
    got = []
    while len(got) < 4:
        m = ev.line()
        if m.get("type") == "push_failed":
            got.append((m["conn"], m["topic"], m["event"], m["code"]))
    assert got == [("demo", "rooms:none", "x", "not_joined"),
                   ("nope", "rooms:lobby", "x", "unknown_connection"),
                   ("demo", "rooms:lobby", None, "bad_request"),
                   ("demo", "rooms:lobby", "e", "bad_request")], got
    # awaiting needs an id to answer to: that one is answered, id null
    c.send_raw(b'{"op":"push","topic":"rooms:lobby","event":"ping","await":true}\n')
    r = c.line()
    assert r["id"] is None and r["error"]["code"] == "bad_request", r
    # "id": null is an id: answered
    c.send_raw(b'{"id":null,"op":"push","topic":"rooms:lobby","event":"ping"}\n')
    assert c.line() == {"id": None, "ok": True, "result": {"status": "sent"}}
    # nothing else was written to this client
    c.send_raw(b'{"id":"end","op":"status"}\n')
    assert c.line()["id"] == "end"


def _complete(d, line):
    """What the bash completion offers for `line` (the cursor at its end)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client-lib",
                          "completions", "phxctl.bash")
    words = line.split(" ")
    prog = (f'source "{script}"; COMP_WORDS=({" ".join(repr(x) for x in words)}); '
            f"COMP_CWORD={len(words) - 1}; _phxctl; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    env = dict(os.environ, PATH=os.path.dirname(PHXD) + ":" + os.environ["PATH"],
               PHXD_SOCKET=d.sock)
    p = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0, p
    return sorted(x for x in p.stdout.splitlines() if x)


@test
def shell_completions_offer_commands_options_connections_and_topics(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:alpha", "rooms:beta"))
    d.wait_joined("rooms:alpha", "rooms:beta")
    assert _complete(d, "phxctl su") == ["subscribe"]
    assert _complete(d, "phxctl push rooms:") == ["rooms:alpha", "rooms:beta"]
    assert _complete(d, "phxctl -q leave rooms:b") == ["rooms:beta"]
    assert _complete(d, "phxctl -C ") == ["demo"]
    assert _complete(d, "phxctl push rooms:alpha ping --a") == ["--await"]
    assert _complete(d, "phxctl subscribe --r") == ["--raw"]
    assert _complete(d, "phxctl subscribe --f") == ["--follow"]
    assert _complete(d, "phxctl subscribe --j") == ["--join", "--json"]
    # the completion knows every command phxctl --help lists, and no other
    listed = [l.split()[0] for l in
              d.ctl("--help").stdout.split("commands:\n")[1].split("\n\n")[0].splitlines()]
    assert sorted(_complete(d, "phxctl ")) == sorted(listed), listed
    assert _complete(d, "phxctl push rooms:alpha ") == [], "no topic after the topic"
    if shutil.which("zsh") is None:
        raise Skip("zsh is missing (./dev setup installs it): the bash completion was checked")
    zsh = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client-lib",
                       "completions", "_phxctl")
    p = subprocess.run(["zsh", "-n", zsh], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


run()
