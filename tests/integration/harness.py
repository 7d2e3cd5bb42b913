# SPDX-License-Identifier: MIT
"""Integration test harness: real phxd, real phxd-testserver, real sockets.

Each test file defines functions decorated with @test and ends with run().
Every process started here is killed at exit; logs stay in a temporary
directory that is printed when a test fails.
"""
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import urllib.request

BUILD = os.environ.get("PHXD_BUILDDIR", os.getcwd())
PHXD = os.path.join(BUILD, "phxd")
PHXCTL = os.path.join(BUILD, "phxctl")
TESTSERVER = os.environ.get("PHXD_TESTSERVER", os.path.join(BUILD, "phxd-testserver"))

_tests = []
_procs = []
_daemons = []
_servers = []
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def test(fn):
    _tests.append(fn)
    return fn


class Skip(Exception):
    """Raised by a test that cannot run here; counted as skipped, never passed."""


def wait_until(pred, timeout=5.0, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class TestServer:
    def __init__(self, workdir, *args, port=0):
        self.workdir = workdir
        self.args = list(args)
        # PHXD_TS_EMULATE=1.8.12 runs a whole test file against that release
        if os.environ.get("PHXD_TS_EMULATE") and "--emulate" not in self.args:
            self.args += ["--emulate", os.environ["PHXD_TS_EMULATE"]]
        self.port = port
        self.proc = None
        self.start()
        _servers.append(self)

    def start(self):
        log = open(os.path.join(self.workdir, "testserver.log"), "a")
        self.proc = subprocess.Popen([TESTSERVER, "--port", str(self.port)] + self.args,
                                     stdout=subprocess.PIPE, stderr=log, text=True)
        _procs.append(self.proc)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise AssertionError(f"phxd-testserver did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1].split("/")[0])
        self.scheme = "wss" if "wss://" in line else "ws"
        host = self.args[self.args.index("--host") + 1] if "--host" in self.args else "127.0.0.1"
        self.hostport = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.url = f"{self.scheme}://{self.hostport}/socket"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def finish(self):
        """Stops the server cleanly and checks it had nothing to report."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError("phxd-testserver did not stop within 10 s of SIGTERM")
            assert rc == 0, f"phxd-testserver exited with {rc} on SIGTERM"
        with open(os.path.join(self.workdir, "testserver.log"), errors="replace") as f:
            log = f.read()
        for mark in SANITIZER_MARKS:
            assert mark not in log, f"sanitizer report in the phxd-testserver log: {mark}"

    def restart(self):
        self.stop()
        # the same port: phxd must find the server where it was
        for _ in range(50):
            try:
                self.start()
                return
            except AssertionError:
                time.sleep(0.1)
        raise AssertionError("could not restart phxd-testserver on its port")

    def control(self, cmd, **args):
        query = "&".join(f"{k}={urllib.parse.quote(str(v))}" for k, v in args.items())
        proto = "https" if self.scheme == "wss" else "http"
        url = f"{proto}://{self.hostport}/control/{cmd}" + (f"?{query}" if query else "")
        ctx = ssl._create_unverified_context() if proto == "https" else None
        with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
            return json.loads(r.read())


class Client:
    """A raw socket-protocol client."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1
        self.pending_lines = []

    def send_raw(self, data):
        self.sock.sendall(data)

    def line(self, timeout=None):
        if self.pending_lines:
            return self.pending_lines.pop(0)
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("phxd closed the connection")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        return json.loads(raw)

    def request(self, op, timeout=10.0, **fields):
        rid = self.next_id
        self.next_id += 1
        self.send_raw((json.dumps(dict(id=rid, op=op, **fields)) + "\n").encode())
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no response to {op} within {timeout}s")
                msg = self.line(timeout=left)
                if msg.get("id") == rid:
                    return msg
                skipped.append(msg)
        finally:
            self.pending_lines = skipped + self.pending_lines

    def ok(self, op, **fields):
        r = self.request(op, **fields)
        assert r.get("ok") is True, f"{op} {fields} failed: {r}"
        return r["result"]

    def close(self):
        self.sock.close()


class Daemon:
    def __init__(self, workdir, config, *extra_args, env=None, wrap=(), log_level="debug"):
        self.workdir = workdir
        self.conf_path = os.path.join(workdir, "phxd.conf")
        self.sock = os.path.join(workdir, "phxd.sock")
        self.log_path = os.path.join(workdir, "phxd.log")
        self.write_config(config)
        e = dict(os.environ)
        e.pop("NOTIFY_SOCKET", None)
        if env:
            e.update(env)
        # PHXD_WRAP="valgrind -q" (say) runs phxd under a tool
        wrap = list(wrap) + os.environ.get("PHXD_WRAP", "").split()
        level = ["-l", log_level] if log_level else []
        self.proc = subprocess.Popen(wrap + [PHXD, "-c", self.conf_path, "-s", self.sock] + level
                                     + list(extra_args),
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, "a"), env=e)
        _procs.append(self.proc)
        _daemons.append(self)
        wait_until(lambda: self._connectable() or self.proc.poll() is not None,
                   what="phxd socket")
        if self.proc.poll() is not None:
            raise AssertionError(f"phxd exited with {self.proc.returncode}: {self.log()}")

    def _connectable(self):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def write_config(self, text):
        with open(self.conf_path, "w") as f:
            f.write(text)

    def client(self):
        return Client(self.sock)

    def status(self, conn=None):
        c = self.client()
        try:
            return c.ok("status", **({"conn": conn} if conn else {}))["connections"]
        finally:
            c.close()

    def topic_states(self):
        return {t["topic"]: t["state"] for c in self.status() for t in c["topics"]}

    def wait_joined(self, *topics, timeout=5.0):
        return wait_until(lambda: all(self.topic_states().get(t) == "joined" for t in topics),
                          timeout, what=f"joined {topics}")

    def ctl(self, *args, input=None, timeout=30):
        env = dict(os.environ, PHXD_SOCKET=self.sock)
        p = subprocess.run([PHXCTL] + list(args), capture_output=True, text=True, env=env,
                           input=input, timeout=timeout)
        for mark in SANITIZER_MARKS:
            assert mark not in p.stderr, f"sanitizer report from phxctl: {p.stderr[-2000:]}"
        return p

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("phxd did not stop within 10 s of SIGTERM")
        return self.proc.returncode

    def kill(self):
        """SIGKILL: no clean stop is expected of this one any more."""
        self.proc.kill()
        self.proc.wait()
        _daemons.remove(self)

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=5.0):
        """Lines go out through phxd's log writer thread, a moment after
        whatever they report: wait for one, then return the whole log."""
        return wait_until(lambda: text in self.log() and self.log(), timeout,
                          what=f"{text!r} in the phxd log")


def notify_socket(workdir, timeout):
    """A datagram socket standing in for systemd's NOTIFY_SOCKET: (path, socket)."""
    path = os.path.join(workdir, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    ns.settimeout(timeout)
    return path, ns


def count_stream(client, sub, n, timeout=20):
    """Reads subscription `sub` until n lines are accounted for: returns
    (messages received, messages reported dropped)."""
    msgs = dropped = 0
    while msgs + dropped < n:
        m = client.line(timeout=timeout)
        if m.get("sub") != sub:
            continue
        if m.get("type") == "dropped":
            dropped += m["count"]
        else:
            msgs += 1
    return msgs, dropped


def metric(d, name):
    """The value of the unlabelled metric name in phxctl metrics."""
    for line in d.ctl("metrics").stdout.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in the metrics")


def read_pauses(d):
    """phxd_websocket_read_pauses_total: how often read moderation paused."""
    return metric(d, "phxd_websocket_read_pauses_total")


# A client buffer that holds a whole stream_in_order: never dropped from,
# however slowly a test reads.
STREAM_HEAD = "[phxd]\nclient_buffer_bytes = 67108864\n"


def stream_in_order(d, client, topic, n, size=200, paused=True):
    """Has the test server stream n messages of size bytes on topic (joined
    by d, whose config has STREAM_HEAD) and checks each arrives, in order;
    and, when paused, that the stream was read with pauses (read
    moderation: it pauses a link phxd keeps up with, whose socket a read
    drains)."""
    before = read_pauses(d)
    sub = client.ok("subscribe", topic=topic)["sub"]
    client.ok("push", topic=topic, event="flood", payload={"n": n, "size": size})
    seen = 0
    while seen < n:
        m = client.line(timeout=20)
        if m.get("sub") != sub:
            continue
        assert m["type"] == "message" and m["payload"]["i"] == seen, (seen, m)
        seen += 1
    assert not paused or read_pauses(d) > before, "a stream was read without a pause"


def config(url, *joins, extra="", conn="demo", head=""):
    lines = [head, f"[connection {conn}]", f"url = {url}", "param.user = itest",
             "jitter = 0", extra]
    lines += [f"join = {j}" for j in joins]
    return "\n".join(lines) + "\n"


def run():
    passed = failed = skipped = 0
    only = sys.argv[1:]
    for fn in _tests:
        if only and fn.__name__ not in only:
            continue
        workdir = tempfile.mkdtemp(prefix=f"phxd-{fn.__name__}-")
        start = time.monotonic()
        try:
            fn(workdir)
            # every daemon must also stop cleanly: exit 0, no sanitizer report
            for d in _daemons:
                rc = d.stop()
                assert rc == 0, f"phxd exited with {rc} on SIGTERM"
                log = d.log()
                for mark in SANITIZER_MARKS:
                    assert mark not in log, f"sanitizer report in the phxd log: {mark}"
            for ts in _servers:
                ts.finish()
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - start:.2f}s)", flush=True)
        except Skip as why:
            skipped += 1
            print(f"skip {fn.__name__}: {why}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__} ({time.monotonic() - start:.2f}s)", flush=True)
            traceback.print_exc()
            for name in ("phxd.log", "testserver.log"):
                p = os.path.join(workdir, name)
                if os.path.exists(p):
                    with open(p, errors="replace") as f:
                        tail = f.read()[-4000:]
                    print(f"--- {name} (end) ---\n{tail}")
        finally:
            for p in _procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            _procs.clear()
            _daemons.clear()
            _servers.clear()
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)
