# SPDX-License-Identifier: MIT
"""The operator's view: per-topic counters, heartbeat round trip and buffer
fill in status; phxctl status for humans; the metrics endpoint (checked by
promtool and an OpenMetrics parser) and phxctl metrics; timestamped log
lines outside journald; outages logged when they start, while they last
and when they end; STATUS= sent on change only."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from harness import PHXD, Daemon, Skip, TestServer, config, notify_socket, run, test, wait_until


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def topic(d, name):
    return [t for c in d.status() for t in c["topics"] if t["topic"] == name][0]


def http_get(url, headers=None, method="GET"):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def promtool(text):
    if shutil.which("promtool") is None:
        raise Skip("promtool is missing (package prometheus; ./dev setup installs it)")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, f"promtool: {p.stdout}{p.stderr}"


def openmetrics_families(text):
    """Parsed by the strict OpenMetrics parser of prometheus_client."""
    for py in ("/usr/bin/python3", "python3"):
        p = subprocess.run([py, "-c", "import sys, json\n"
                            "from prometheus_client.openmetrics.parser import "
                            "text_string_to_metric_families as parse\n"
                            "out = {}\n"
                            "for f in parse(sys.stdin.read()):\n"
                            "    out[f.name] = [f.type, [[s.name, s.labels, s.value] "
                            "for s in f.samples]]\n"
                            "print(json.dumps(out))"],
                           input=text, capture_output=True, text=True, timeout=30)
        if "No module named" in p.stderr:
            continue
        assert p.returncode == 0, f"OpenMetrics parser: {p.stderr[-2000:]}"
        import json
        return json.loads(p.stdout)
    raise Skip("no python3 here has prometheus_client (package python3-prometheus-client)")


@test
def status_counts_per_topic_and_shows_buffers_and_heartbeat_rtt(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:ops", extra="heartbeat_interval_ms = 100"))
    d.wait_joined("rooms:ops")
    c = d.client()
    assert c.ok("push", topic="rooms:ops", event="ping", **{"await": True})["status"] == "ok"
    r = c.request("push", topic="rooms:ops", event="error_reply", **{"await": True})
    assert r["error"]["code"] == "reply_error", r
    c.ok("push", topic="rooms:ops", event="broadcast", payload={"n": 1}, **{"await": True})
    c.ok("push", topic="rooms:ops", event="push to me")
    st = wait_until(lambda: (t := topic(d, "rooms:ops"))["stats"]["messages_in"] >= 2 and t,
                    what="two messages in")["stats"]
    assert st["pushes_out"] == 4 and st["replies_ok"] == 2 and st["replies_error"] == 1, st
    assert st["pushes_failed"] == 0, st
    assert 0 <= st["last_message_ago_ms"] < 5000, st
    conn = wait_until(lambda: (s := d.status()[0]).get("heartbeat_rtt_ms") is not None and s,
                      what="a heartbeat round trip")
    assert 0 <= conn["heartbeat_rtt_ms"] < 1000 and conn["stats"]["heartbeats_acked"] >= 1, conn
    assert conn["push_buffer"] == {"pushes": 0, "max_pushes": 10000, "bytes": 0,
                                   "max_bytes": 67108864}, conn["push_buffer"]
    ipc = c.ok("status")["ipc"]
    assert ipc["client_buffer_bytes"] == 8388608 and ipc["clients"] >= 1, ipc
    # a topic never joined has counters too, and no last message
    assert c.request("join", topic="rejected:ops")["error"]["code"] == "reply_error"
    rej = topic(d, "rejected:ops")["stats"]
    assert rej["messages_in"] == 0 and rej["last_message_ago_ms"] is None, rej


@test
def push_buffer_fill_shows_while_the_server_is_away(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:buf", extra="push_timeout_ms = 60000"))
    d.wait_joined("rooms:buf")
    ts.stop()
    wait_until(lambda: d.status()[0]["state"] != "open", what="the connection down")
    c = d.client()
    for i in range(3):  # answered once sent: not waited for here
        c.send_raw(f'{{"id":{i},"op":"push","topic":"rooms:buf","event":"ping",'
                   f'"payload":{{"i":{i}}}}}\n'.encode())
    pb = wait_until(lambda: (b := d.status()[0]["push_buffer"])["pushes"] == 3 and b,
                    what="three pushes buffered")
    assert pb["pushes"] == 3 and pb["bytes"] >= 3 * len('{"i":0}'), pb
    assert topic(d, "rooms:buf")["buffered"] == 3


@test
def phxctl_status_reads_like_systemctl_status(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:human", "rejected:human")
               + config("ws://127.0.0.1:1/socket", conn="nowhere"))
    d.wait_joined("rooms:human")
    c = d.client()
    c.ok("push", topic="rooms:human", event="ping", conn="demo", **{"await": True})
    c.ok("join", topic="rooms:\x1b[31mred", conn="demo")
    wait_until(lambda: d.status("nowhere")[0].get("outage"), what="the outage in status")
    p = d.ctl("status")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "\x1b" not in out, "a control character reached the terminal"
    assert "rooms:\\x1b[31mred" in out, out
    assert re.search(r"^o phxd \S+ - up \S+, 0 reloads$", out, re.M), out
    assert "Connections: 1/2 open" in out, out
    assert re.search(r"^\* demo - open - ws://", out, re.M), out
    assert re.search(r"Up: \S+, heartbeat rtt|Up: \S+;", out), out
    assert re.search(r"^o nowhere - (waiting|connecting) - ws://127\.0\.0\.1:1/socket$", out,
                     re.M), out
    assert re.search(r"Down: \S+, \d+ failed attempts?", out), out
    row = [line for line in out.splitlines() if line.strip().startswith("rooms:human")][0]
    assert re.search(r"rooms:human\s+joined\s+0\s+1\s+1/0\s+-\s+config$", row), row
    rej = [line for line in out.splitlines() if line.strip().startswith("rejected:human")][0]
    assert "error:" in rej and "unauthorized" in rej, rej
    # --json is the daemon's own response
    assert '"connections"' in d.ctl("status", "--json").stdout


@test
def metrics_endpoint_passes_promtool_and_the_openmetrics_parser(w):
    ts = TestServer(w)
    port = free_port()
    d = Daemon(w, config(ts.url, "rooms:m", 'rooms:"quoted\\', head=f"[phxd]\nmetrics_listen = "
                         f"127.0.0.1:{port}\noutbox = {w}/outbox.db\n"))
    d.wait_joined("rooms:m", 'rooms:"quoted\\')
    c = d.client()
    c.ok("push", topic="rooms:m", event="ping", **{"await": True})
    c.request("push", topic="rooms:m", event="error_reply", **{"await": True})
    c.ok("push", topic='rooms:"quoted\\', event="error_reply", durable=True)
    wait_until(lambda: c.ok("outbox")["failed"] == 1, what="the durable push failed")
    url = f"http://127.0.0.1:{port}/metrics"
    code, ctype, text = http_get(url)
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4"), (code, ctype)
    promtool(text)
    assert 'phxd_topic_pushes_sent_total{connection="demo",topic="rooms:m"} 2' in text, text
    assert 'phxd_topic_replies_total{connection="demo",topic="rooms:m",status="ok"} 1' in text
    assert 'phxd_topic_replies_total{connection="demo",topic="rooms:m",status="error"} 1' in text
    assert 'phxd_connection_up{connection="demo"} 1' in text
    assert 'topic="rooms:\\"quoted\\\\"' in text, "label value not escaped"
    assert "phxd_outbox_up 1\n" in text and "phxd_outbox_failed 1\n" in text and \
        "phxd_outbox_stored_total 1\n" in text and "phxd_outbox_pending 0\n" in text, text
    # Prometheus asks for OpenMetrics and gets it
    code, ctype, om = http_get(url, {"Accept": "application/openmetrics-text;version=1.0.0,"
                                               "text/plain;version=0.0.4;q=0.5"})
    assert code == 200 and ctype.startswith("application/openmetrics-text; version=1.0.0"), ctype
    assert om.endswith("# EOF\n"), om[-100:]
    fams = openmetrics_families(om)
    assert fams["phxd_topic_replies"][0] == "counter", fams["phxd_topic_replies"]
    samples = {(s[1].get("topic"), s[1].get("status")): s[2]
               for s in fams["phxd_topic_replies"][1]}
    assert samples[("rooms:m", "ok")] == 1 and samples[('rooms:"quoted\\', "ok")] == 0, samples
    assert fams["phxd_connection_topics_joined"][1][0][2] == 2
    # phxctl metrics says the same
    p = d.ctl("metrics")
    assert p.returncode == 0, p.stderr
    promtool(p.stdout)
    assert 'phxd_topic_pushes_sent_total{connection="demo",topic="rooms:m"} 2' in p.stdout
    assert openmetrics_families(d.ctl("metrics", "--openmetrics").stdout)


@test
def metrics_endpoint_refuses_what_it_does_not_serve(w):
    port = free_port()
    d = Daemon(w, f"[phxd]\nmetrics_listen = 127.0.0.1:{port}\n")
    base = f"http://127.0.0.1:{port}"
    assert http_get(base + "/")[0] == 404
    assert http_get(base + "/metrics/../etc")[0] == 404
    assert http_get(base + "/metrics", method="POST")[0] == 501  # libevent: not implemented
    assert http_get(base + "/metrics", method="HEAD")[0] == 200
    # a request that never ends, and one with headers past the limit
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    s.settimeout(5)
    head = s.recv(100)
    assert head.startswith(b"HTTP/1.1 4"), head
    s.close()
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /metr")
    assert http_get(base + "/metrics")[0] == 200, "one slow client holds up the others"
    slow.close()
    assert d.alive()
    # phxd without metrics_listen listens on no port at all
    p = subprocess.run([PHXD, "--check-config", "-c", d.conf_path], capture_output=True,
                       text=True)
    assert p.returncode == 0, p


@test
def metrics_listen_is_checked_and_moves_on_reload(w):
    conf = os.path.join(w, "bad.conf")
    for bad in ("localhost:9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "[::1:9464",
                "1.2.3.4:12ab"):
        with open(conf, "w") as f:
            f.write(f"[phxd]\nmetrics_listen = {bad}\n")
        p = subprocess.run([PHXD, "--check-config", "-c", conf], capture_output=True, text=True)
        assert p.returncode != 0 and "metrics_listen" in p.stderr, (bad, p)
    port1, port2 = free_port(), free_port()
    d = Daemon(w, f"[phxd]\nmetrics_listen = 127.0.0.1:{port1}\n")
    assert http_get(f"http://127.0.0.1:{port1}/metrics")[0] == 200
    d.write_config(f"[phxd]\nmetrics_listen = [::1]:{port2}\n")
    assert d.client().ok("reload")
    assert http_get(f"http://[::1]:{port2}/metrics")[0] == 200
    try:
        http_get(f"http://127.0.0.1:{port1}/metrics")
        raise AssertionError("the old metrics port still answers")
    except urllib.error.URLError:
        pass
    # a port someone else holds: the reload fails and the endpoint stays
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    d.write_config(f"[phxd]\nmetrics_listen = 127.0.0.1:{taken}\n")
    r = d.client().request("reload")
    assert not r["ok"] and "metrics_listen" in r["error"]["message"], r
    assert http_get(f"http://[::1]:{port2}/metrics")[0] == 200
    holder.close()
    d.write_config("[phxd]\n")
    assert d.client().ok("reload")
    try:
        http_get(f"http://[::1]:{port2}/metrics")
        raise AssertionError("metrics still served after metrics_listen was removed")
    except urllib.error.URLError:
        pass


@test
def log_lines_outside_journald_carry_time_and_level(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:log", "rejected:log"))
    d.wait_joined("rooms:log")
    d.wait_log("demo: joined rooms:log")
    d.wait_log("join of rejected:log refused")
    lines = [line for line in d.log().splitlines() if line]
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z phxd\[(\d+)\]: "
                       r"(error|warning|info|debug): ")
    bad = [line for line in lines if not stamp.match(line)]
    assert not bad, bad[:3]
    assert {stamp.match(line)[1] for line in lines} == {str(d.proc.pid)}
    assert any(": info: demo: joined rooms:log" in line for line in lines), lines
    assert any(": warning: demo: join of rejected:log refused" in line for line in lines), lines


@test
def an_outage_is_logged_when_it_starts_while_it_lasts_and_when_it_ends(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:out", extra="outage_log_interval_ms = 300\n"
                         "reconnect_after_ms = 50 100"), log_level="info")
    d.wait_joined("rooms:out")
    ts.stop()
    d.wait_log("demo: disconnected:")
    wait_until(lambda: len(re.findall(r"still down after", d.log())) >= 2, timeout=10,
               what="two periodic outage lines")
    periodic = re.findall(r"demo: still down after ([0-9.]+) s: (\d+) failed attempts?", d.log())
    assert [int(n) for _, n in periodic] == sorted(int(n) for _, n in periodic), periodic
    assert int(periodic[-1][1]) >= 3, periodic
    # not one line per attempt at info: the attempts between are quiet
    attempts = d.status()[0]["outage"]["failed_attempts"]
    assert len(re.findall(r"cannot connect", d.log())) < attempts, d.log()
    down = d.status()[0]["outage"]
    assert down["down_for_ms"] >= 600 and down["failed_attempts"] >= 3, down
    ts.restart()
    d.wait_joined("rooms:out", timeout=10)
    m = wait_until(lambda: re.search(r"demo: connected to \S+ after ([0-9.]+) s down "
                                     r"\((\d+) failed attempts?\)", d.log()),
                   what="the outage end")
    assert float(m[1]) >= 0.6 and int(m[2]) >= 3, m[0]
    assert "outage" not in d.status()[0]


@test
def status_goes_to_systemd_on_change_only(w):
    ts = TestServer(w)
    ns_path, ns = notify_socket(w, 0.2)
    d = Daemon(w, config(ts.url, "rooms:st"), env={"NOTIFY_SOCKET": ns_path})
    d.wait_joined("rooms:st")

    def drain():
        out = []
        while True:
            try:
                out.append(ns.recv(4096).decode())
            except socket.timeout:
                return [m for m in out if m.startswith("STATUS=")]

    first = drain()
    assert first and first[-1] == "STATUS=1/1 connections up, 1/1 topics joined, 0 clients", first
    c = d.client()
    c.ok("status")
    assert drain() == ["STATUS=1/1 connections up, 1/1 topics joined, 1 clients"]
    for _ in range(5):
        c.ok("status")
    assert drain() == [], "STATUS= repeated with nothing changed"
    c.close()
    assert drain() == ["STATUS=1/1 connections up, 1/1 topics joined, 0 clients"]
    ts.stop()
    assert "STATUS=0/1 connections up, 0/1 topics joined, 0 clients" in \
        wait_until(lambda: drain() or None, what="a STATUS after the drop")
    d.signal(signal.SIGTERM)
    assert d.proc.wait(10) == 0


run()
