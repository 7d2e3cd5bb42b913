# SPDX-License-Identifier: MIT
"""phxd as a process: command line, --check-config, SIGHUP reload, SIGTERM
shutdown, sd_notify messages, and the socket it will not steal."""
import json
import os
import re
import signal
import socket
import subprocess
import time

from harness import PHXCTL, PHXD, Client, Daemon, TestServer, config, notify_socket, run, test, wait_until


def phxd(*args, timeout=10):
    return subprocess.run([PHXD] + list(args), capture_output=True, text=True, timeout=timeout)


@test
def command_line_and_check_config(w):
    p = phxd("--bogus")
    assert p.returncode == 2 and "unknown option" in p.stderr, p
    p = phxd("-l", "chatty")
    assert p.returncode == 2 and "unknown log level" in p.stderr, p
    p = phxd("extra")
    assert p.returncode == 2, p
    p = phxd("-c")
    assert p.returncode == 2 and "needs a value" in p.stderr, p
    p = phxd("-V")
    assert p.returncode == 0 and p.stdout.startswith("phxd "), p
    p = phxd("-h")
    assert p.returncode == 0 and "--check-config" in p.stdout, p
    good = os.path.join(w, "good.conf")
    with open(good, "w") as f:
        f.write(config("ws://127.0.0.1:1/socket", "a", "b"))
    p = phxd("-c", good, "--check-config")
    assert p.returncode == 0 and "OK (1 connection, 2 topics)" in p.stdout, p
    bad = os.path.join(w, "bad.conf")
    with open(bad, "w") as f:
        f.write("[connection x]\nurl = ws://h/s\nheartbeat_interval_ms = soon\n")
    p = phxd("-c", bad, "--check-config")
    assert p.returncode == 1 and f"{bad}:3: heartbeat_interval_ms:" in p.stderr, p
    example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc",
                           "phxd.conf.example")
    p = phxd("-c", example, "--check-config")
    assert p.returncode == 0 and "OK (1 connection, 2 topics)" in p.stdout, p
    p = phxd("-c", os.path.join(w, "missing.conf"))
    assert p.returncode == 1 and "No such file" in p.stderr, p


@test
def sighup_reload_joins_leaves_and_keeps_other_connections(w):
    ts = TestServer(w)
    ts2 = TestServer(w)
    base = config(ts.url, "rooms:keep", "rooms:drop") + config(ts2.url, "rooms:two", conn="second")
    d = Daemon(w, base)
    d.wait_joined("rooms:keep", "rooms:drop", "rooms:two")
    d.write_config(config(ts.url, "rooms:keep", "rooms:new") +
                   config(ts2.url, "rooms:two", conn="second", extra="param.changed = yes"))
    d.signal(signal.SIGHUP)
    d.wait_joined("rooms:keep", "rooms:new", "rooms:two")
    wait_until(lambda: "rooms:drop" not in d.topic_states(), what="rooms:drop left")
    st = {c["name"]: c for c in d.status()}
    assert st["demo"]["connects"] == 1, st["demo"]          # untouched socket
    wait_until(lambda: {c["name"]: c for c in d.status()}["second"]["connects"] == 2,
               what="the changed connection reconnects")
    c = d.client()
    r = c.ok("push", conn="second", topic="rooms:two", event="whoami", **{"await": True})
    assert r["response"]["params"].get("changed") == "yes", r
    # a broken file is refused and the running config stays
    d.write_config("[connection demo]\nurl = nope\n")
    r = c.request("reload")
    assert r["error"]["code"] == "config_error" and ":2: url:" in r["error"]["message"], r
    # what the unit's ExecReload runs: a refused config fails systemctl reload
    p = d.ctl("reload")
    assert p.returncode == 5 and "config_error" in p.stderr and ":2: url:" in p.stderr, p
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.log().count("keeping the running configuration") == 3,
               what="the SIGHUP reload refused too")
    assert c.ok("status")["reloads"] == 1
    assert d.alive() and d.topic_states().get("rooms:keep") == "joined"
    # removing a connection
    d.write_config(config(ts.url, "rooms:keep"))
    assert c.ok("reload")["reloads"] == 2
    assert [x["name"] for x in d.status()] == ["demo"]
    wait_until(lambda: ts2.control("stats")["connections"] == 0, what="second closed")
    # and adding it back: a fresh connection in the freed slot
    d.write_config(config(ts.url, "rooms:keep") + config(ts2.url, "rooms:back", conn="second"))
    assert c.ok("reload")["reloads"] == 3
    d.wait_joined("rooms:keep", "rooms:back")
    r = c.ok("push", conn="second", topic="rooms:back", event="ping", **{"await": True})
    assert r["response"] == {"pong": "pong"}, r


@test
def reload_applies_a_new_log_level(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", head="[phxd]\nlog_level = warn\n"), log_level=None)
    d.client().ok("status")
    assert "client pid" not in d.log() and "joined rooms:a" not in d.log()
    d.write_config(config(ts.url, "rooms:a", head="[phxd]\nlog_level = debug\n"))
    assert d.client().ok("reload")
    wait_until(lambda: "reload: log level now debug" in d.log(), what="the new level")
    d.client().ok("status")
    wait_until(lambda: "ipc: client pid" in d.log(), what="debug lines after the reload")


@test
def sigterm_leaves_closes_and_answers_pending(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", "rooms:b"))
    d.wait_joined("rooms:a", "rooms:b")
    c = d.client()
    c.send_raw(b'{"id": 1, "op": "push", "topic": "rooms:a", "event": "quicksand", "await": true}\n')
    wait_until(lambda: d.client().ok("status")["ipc"]["pending"] == 1, what="the push in flight")
    assert d.stop() == 0
    r = c.line(timeout=5)
    assert r["id"] == 1 and r["error"]["code"] == "shutting_down", r
    st = ts.control("stats")
    assert st["connections"] == 0 and st["channels"] == 0, st
    assert not os.path.exists(d.sock)
    assert "stopped" in d.log()


@test
def stop_waits_at_most_two_seconds_for_a_server_that_does_not_answer(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:a", head="[phxd]\nmax_line_bytes = 1048576\n",
                         extra="heartbeat_interval_ms = 0"))
    d.wait_joined("load:a")
    # the server stops reading and phxd has 16 MiB for it: the socket fills,
    # and the leave and the close frame cannot go out
    ts.control("reading", on=0)
    c = d.client()
    blob = "x" * (512 << 10)
    for _ in range(32):
        c.ok("push", topic="load:a", event="sink", payload={"b": blob})
    start = time.monotonic()
    assert d.stop() == 0
    took = time.monotonic() - start
    assert 1.5 <= took < 4.5, f"stopped after {took:.2f} s"
    ts.control("reading", on=1)


@test
def sd_notify_ready_status_reloading_stopping(w):
    ts = TestServer(w)
    ns_path, ns = notify_socket(w, 5)
    d = Daemon(w, config(ts.url, "rooms:a"), env={"NOTIFY_SOCKET": ns_path,
                                                 "WATCHDOG_USEC": "400000"})
    msgs = []

    def until(pred, what):
        deadline = time.monotonic() + 5
        while not any(pred(m) for m in msgs):
            assert time.monotonic() < deadline, f"no {what} in {msgs}"
            msgs.append(ns.recv(4096).decode())

    until(lambda m: "READY=1" in m, "READY=1")
    until(lambda m: "STATUS=1/1 connections up, 1/1 topics joined" in m, "STATUS with the join")
    until(lambda m: "WATCHDOG=1" in m, "WATCHDOG=1")
    d.signal(signal.SIGHUP)
    until(lambda m: "RELOADING=1" in m, "RELOADING=1")
    d.stop()
    until(lambda m: "STOPPING=1" in m, "STOPPING=1")


@test
def journald_priorities_under_systemd(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", "rejected:x"), env={"JOURNAL_STREAM": "8:12345"})
    d.wait_joined("rooms:a")
    wait_until(lambda: "<4>" in d.log(), what="a warning")
    lines = [l for l in d.log().splitlines() if l]
    assert all(l[:3] in ("<3>", "<4>", "<6>", "<7>") for l in lines), lines[:5]
    assert any(l.startswith("<6>") and "joined rooms:a" in l for l in lines), lines
    assert any(l.startswith("<4>") and "rejected:x" in l for l in lines), lines


@test
def reload_pushes_the_heartbeat_interval_without_reconnecting(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", extra="heartbeat_interval_ms = 100"))
    d.wait_joined("rooms:a")
    wait_until(lambda: ts.control("stats")["heartbeats"] >= 2, what="heartbeats every 100 ms")
    d.write_config(config(ts.url, "rooms:a", extra="heartbeat_interval_ms = 0"))
    assert d.client().ok("reload")
    count = ts.control("stats")["heartbeats"]
    # three old intervals pass: none more is sent, and the socket stays
    c = d.client()
    deadline = time.monotonic() + 0.35
    while time.monotonic() < deadline:
        assert c.ok("push", topic="rooms:a", event="ping", **{"await": True})["status"] == "ok"
    assert ts.control("stats")["heartbeats"] <= count + 1
    d.write_config(config(ts.url, "rooms:a", extra="heartbeat_interval_ms = 50"))
    assert d.client().ok("reload")
    now = ts.control("stats")["heartbeats"]
    wait_until(lambda: ts.control("stats")["heartbeats"] >= now + 3, what="heartbeats resumed")
    st = d.status()[0]
    assert st["connects"] == 1 and st["stats"]["heartbeat_timeouts"] == 0, st


@test
def will_not_steal_a_live_socket(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url))
    p = phxd("-c", d.conf_path, "-s", d.sock)
    assert p.returncode == 1 and "in use by a running phxd" in p.stderr, p
    assert d.client().ok("status")
    # a stale socket file (no daemon) is replaced
    d.stop()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(d.sock)
    stale.close()
    d2 = Daemon(w, config(ts.url))
    assert d2.client().ok("status")


@test
def what_is_not_a_stale_socket_is_left_alone(w):
    ts = TestServer(w)
    conf = os.path.join(w, "phxd.conf")
    with open(conf, "w") as f:
        f.write(config(ts.url))
    precious = os.path.join(w, "precious")
    with open(precious, "w") as f:
        f.write("keep me")
    target = os.path.join(w, "sock-file")
    with open(target, "w") as f:
        f.write("a regular file")
    p = phxd("-c", conf, "-s", target)
    assert p.returncode == 1 and "is not a socket" in p.stderr, p
    assert open(target).read() == "a regular file"
    link = os.path.join(w, "sock-link")
    os.symlink(precious, link)
    p = phxd("-c", conf, "-s", link)
    assert p.returncode == 1 and "is not a socket" in p.stderr, p
    assert os.path.islink(link) and open(precious).read() == "keep me"
    os.chmod(precious, 0o600)
    # the socket gets exactly socket_mode, with no window of another mode
    d = Daemon(w, config(ts.url, head="[phxd]\nsocket_mode = 0640\n"))
    assert os.stat(d.sock).st_mode & 0o777 == 0o640
    assert os.stat(precious).st_mode & 0o777 == 0o600


@test
def a_log_sink_that_blocks_never_freezes_phxd(w):
    ts = TestServer(w)
    conf = os.path.join(w, "phxd.conf")
    sock = os.path.join(w, "phxd.sock")
    with open(conf, "w") as f:
        f.write(config(ts.url, "rooms:a"))
    # stderr is a pipe nobody reads until the end: it fills after ~64 KiB
    p = subprocess.Popen([PHXD, "-c", conf, "-s", sock, "-l", "debug"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        def connectable():
            try:
                Client(sock, timeout=5).close()
                return True
            except OSError:
                return False
        wait_until(connectable, what="phxd socket")
        # every client logs two debug lines (~140 bytes): 8000 of them are far
        # past the pipe (64 KiB) and phxd's log queue (256 KiB)
        for i in range(8000):
            c = Client(sock, timeout=5)
            assert c.ok("hello")["version"] == 1
            c.close()
        c = Client(sock, timeout=5)
        assert c.ok("push", topic="rooms:a", event="ping", **{"await": True})["status"] == "ok"
        c.close()
        p.send_signal(signal.SIGTERM)
        err = p.stderr.read().decode(errors="replace")
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert re.search(r"warning: \d+ log lines dropped: the log output was blocked", err), err[-500:]
    # what was queued at exit reached the sink: its last words, or the count
    # of lines that did not fit
    last = err.splitlines()[-1]
    assert last.endswith("stopped") or "log lines dropped" in last, err[-300:]


def connect_as(sock, uid, gid, n=1):
    """First line phxd sends each of n clients of uid, after a status request."""
    code = ("import socket, sys\n"
            "socks = []\n"
            f"for i in range({n}):\n"
            "    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); socks.append(s)\n"
            "    s.settimeout(5)\n"
            "    try:\n"
            "        s.sendall(b'{\"id\": 1, \"op\": \"status\"}\\n')\n"
            "    except BrokenPipeError:\n"
            "        pass  # refused: phxd said why and hung up first\n"
            "    print(s.makefile().readline().strip(), flush=True)\n")
    p = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                        "python3", "-c", code, sock], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p
    return [json.loads(l) for l in p.stdout.splitlines()]


@test
def peer_credentials_allow_users_and_per_uid_limits(w):
    ts = TestServer(w)
    os.chmod(w, 0o755)
    head = ("[phxd]\nsocket_mode = 0666\nallow_users = nobody\nallow_groups = 4243\n"
            "max_clients_per_uid = 2\n")
    d = Daemon(w, config(ts.url, head=head))
    nobody = 65534
    answers = connect_as(d.sock, nobody, nobody, n=3)
    assert [a["ok"] for a in answers] == [True, True, False], answers
    assert answers[2]["error"]["code"] == "busy", answers
    stranger = connect_as(d.sock, 4242, 4242)[0]
    assert stranger["ok"] is False and stranger["error"]["code"] == "forbidden", stranger
    d.wait_log("uid 4242 refused")
    member = connect_as(d.sock, 4242, 4243)[0]
    assert member["ok"] is True, member
    # root is always let in
    assert d.client().ok("status")


@test
def requests_in_flight_at_stop_are_answered_not_reset(w):
    """Clients that send a request while phxd is stopping (say, one it
    accepted the moment before a systemctl restart) get an answer,
    shutting_down, rather than a reset connection."""
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:a", head="[phxd]\nmax_line_bytes = 1048576\n",
                         extra="heartbeat_interval_ms = 0"))
    d.wait_joined("load:a")
    clients = [d.client() for _ in range(20)]
    for c in clients:
        c.ok("hello", version=1)
    # as above: the server reads nothing and phxd has 16 MiB for it, so the
    # leave cannot go and phxd spends its 2 s stop grace waiting; the
    # requests arrive after its loop has ended
    ts.control("reading", on=0)
    blob = "x" * (512 << 10)
    for _ in range(32):
        clients[0].ok("push", topic="load:a", event="sink", payload={"b": blob})
    d.signal(signal.SIGTERM)
    d.wait_log("SIGTERM: leaving topics")
    for i, c in enumerate(clients):
        c.send_raw(f'{{"id":"late-{i}","op":"{"status" if i % 2 else "push"}",'
                   f'"topic":"load:a","event":"ping","await":true}}\n'.encode())
    for i, c in enumerate(clients):
        r = c.line(timeout=10)  # a reset raises here
        assert r["id"] == f"late-{i}" and r["error"]["code"] == "shutting_down", r
    assert d.proc.wait(10) == 0
    ts.control("reading", on=1)

@test
def phxctl_timeout_bounds_a_hung_daemon(w):
    """A phxd that stops answering (SIGSTOP) holds phxctl no longer than
    --timeout, connecting included, and the exit status says timeout."""
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"))
    d.wait_joined("rooms:a")
    d.signal(signal.SIGSTOP)
    try:
        for args in (["status"], ["-t", "500", "push", "rooms:a", "ping", "--await"]):
            t0 = time.monotonic()
            p = d.ctl("--timeout", "500", *args, timeout=20) if args[0] == "status" \
                else d.ctl(*args, timeout=20)
            took = time.monotonic() - t0
            assert p.returncode == 4, (args, p)
            assert "did not answer within 500 ms" in p.stderr, p.stderr
            assert took < 1.5, f"{args}: {took:.2f} s"
    finally:
        d.signal(signal.SIGCONT)
    assert d.ctl("--timeout", "500", "status").returncode == 0


@test
def clients_accepted_just_before_a_stop_are_heard_out(w):
    """Clients phxd accepted a moment before SIGTERM, still silent: their
    first request, sent while phxd stops, is answered (shutting_down) rather
    than met by a closed socket."""
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"))
    d.wait_joined("rooms:a")
    socks = []
    for _ in range(10):
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.sock)
        socks.append(s)
    wait_until(lambda: d.client().ok("status")["ipc"]["clients"] == 11, what="all accepted")
    d.signal(signal.SIGTERM)
    d.wait_log("SIGTERM: leaving topics", timeout=5)
    for i, s in enumerate(socks):
        s.sendall(f'{{"id":{i},"op":"status"}}\n'.encode())
    for i, s in enumerate(socks):
        s.settimeout(5)
        line = s.makefile().readline()
        r = json.loads(line)
        assert r["id"] == i and r["error"]["code"] == "shutting_down", r
        s.close()
    assert d.proc.wait(10) == 0


def _subscriptions(d):
    c = d.client()
    try:
        return c.ok("status")["ipc"]["subscriptions"]
    finally:
        c.close()


@test
def phxctl_follow_outlives_a_daemon_killed_and_started_again(w):
    ts = TestServer(w)
    conf = config(ts.url, "rooms:lobby")
    d = Daemon(w, conf)
    d.wait_joined("rooms:lobby")
    sub = subprocess.Popen([PHXCTL, "-s", d.sock, "subscribe", "rooms:lobby", "--follow",
                            "--raw", "-e", "broadcast", "-n", "3", "-t", "20000"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ev = subprocess.Popen([PHXCTL, "-s", d.sock, "events", "--follow", "-t", "20000"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _subscriptions(d) == 2, what="both streams subscribed")
        d.client().ok("push", topic="rooms:lobby", event="broadcast", payload={"n": 1})
        assert sub.stdout.readline() == '{"n":1}\n'
        d.kill()
        assert sub.stderr.readline().startswith("phxctl: lost phxd (")
        assert ev.stderr.readline().startswith("phxctl: lost phxd (")
        time.sleep(0.3)   # phxd is away for a moment: the followers keep trying
        d = Daemon(w, conf)
        d.wait_joined("rooms:lobby")
        line = sub.stderr.readline()
        assert line.startswith("phxctl: reconnected; subscribed again"), line
        assert ev.stderr.readline().startswith("phxctl: reconnected; following events")
        wait_until(lambda: _subscriptions(d) == 2, what="both streams subscribed again")
        for n in (2, 3):
            d.client().ok("push", topic="rooms:lobby", event="broadcast", payload={"n": n})
            assert sub.stdout.readline() == f'{{"n":{n}}}\n'
        assert sub.wait(10) == 0     # --count 3 across the restart
        # the events stream goes on with the new daemon's state changes
        ev_lines = []
        d.client().ok("join", topic="rooms:after")
        wait_until(lambda: ev_lines.append(ev.stdout.readline()) or
                   '"rooms:after"' in ev_lines[-1], what="an event of the new daemon")
    finally:
        for p in (sub, ev):
            if p.poll() is None:
                p.kill()
                p.wait()
    # Without --follow, losing phxd ends the stream: exit 3.
    plain = subprocess.Popen([PHXCTL, "-s", d.sock, "events"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_until(lambda: _subscriptions(d) == 1, what="the plain stream subscribed")
    d.kill()
    assert plain.wait(10) == 3, plain.stderr.read()


@test
def phxctl_follow_gives_up_after_its_timeout_of_silence(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    sub = subprocess.Popen([PHXCTL, "-s", d.sock, "events", "--follow", "-t", "700"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: _subscriptions(d) == 1, what="subscribed")
    d.kill()
    start = time.monotonic()
    assert sub.wait(10) == 4
    assert time.monotonic() - start < 5
    err = sub.stderr.read()
    assert "lost phxd" in err and "nothing within 700 ms" in err, err


run()
