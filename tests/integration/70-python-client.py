# SPDX-License-Identifier: MIT
"""client-lib/python (package phxd) against a live phxd and phxd-testserver."""
import os
import sys
import threading
import time

import shutil
import subprocess

from harness import Daemon, Skip, TestServer, config, run, test, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "client-lib", "python"))  # the package phxd/
import phxd  # noqa: E402


@test
def push_join_leave_status(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:py"))
    d.wait_joined("rooms:py")
    with phxd.Client(d.sock) as c:
        assert c.hello["version"] == phxd.PROTOCOL_VERSION
        assert c.push("rooms:py", "ping", {}, await_reply=True) == {"pong": "pong"}
        assert c.push("rooms:py", "ping") is None
        assert c.join("rooms:other", {"a": 1}) == {"joined": "rooms:other", "params": {"a": 1}}
        topics = {t["topic"]: t["state"] for t in c.status()["connections"][0]["topics"]}
        assert topics == {"rooms:py": "joined", "rooms:other": "joined"}, topics
        c.leave("rooms:other")
        assert c.push("rooms:py", "blob", binary=b"\x00\x01\xff", await_reply=True) == \
            b"\x00\x01\xff"


@test
def errors_carry_the_daemon_codes(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:py"))
    d.wait_joined("rooms:py")
    c = phxd.Client(d.sock)
    try:
        c.push("rooms:py", "error_reply", await_reply=True)
        raise AssertionError("no ReplyError")
    except phxd.ReplyError as e:
        assert e.code == "reply_error" and e.status == "error"
        assert e.response == {"reason": "nope"}
    try:
        c.push("rooms:none", "x")
        raise AssertionError("no NotJoined")
    except phxd.NotJoined as e:
        assert e.code == "not_joined"
    try:
        c.push("rooms:py", "quicksand", await_reply=True, timeout_ms=200)
        raise AssertionError("no Timeout")
    except phxd.Timeout as e:
        assert e.code == "timeout"
    try:
        c.join("rejected:nope")
        raise AssertionError("no ReplyError for a refused join")
    except phxd.ReplyError as e:
        assert e.response == {"reason": "unauthorized"}
    try:
        c.request("teleport")
        raise AssertionError("no Error")
    except phxd.Error as e:
        assert e.code == "unknown_op"
    c.close()
    try:
        phxd.Client(os.path.join(w, "nothing.sock"))
        raise AssertionError("no Unreachable")
    except phxd.Unreachable:
        pass


@test
def subscribe_iterates_and_events_stream(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a", "rooms:b"))
    d.wait_joined("rooms:a", "rooms:b")
    c = phxd.Client(d.sock)
    got = []
    sub = c.subscribe("rooms:*", events=["broadcast"], count=2, timeout=5)
    t = threading.Thread(target=lambda: got.extend(sub))
    t.start()
    c.push("rooms:a", "broadcast", {"n": 1}, await_reply=True)
    c.push("rooms:a", "push to me")
    c.push("rooms:b", "broadcast", {"n": 2}, await_reply=True)
    t.join(10)
    sub.close()
    assert [(m["topic"], m["payload"]) for m in got] == [("rooms:a", {"n": 1}),
                                                          ("rooms:b", {"n": 2})], got
    with c.events(count=2, timeout=5) as ev:
        ts.control("close", code=1001)
        states = [(e["type"], e["state"]) for e in ev]
    assert states[0] == ("connection", "disconnected"), states
    try:
        with c.subscribe("rooms:a", timeout=0.3) as quiet:
            next(quiet)
        raise AssertionError("no Timeout")
    except phxd.Timeout:
        pass
    try:
        c.subscribe("a*b")
        raise AssertionError("no Error")
    except phxd.Error as e:
        assert e.code == "bad_request"


@test
def pip_installs_the_package(w):
    """pyproject.toml: pip builds and installs it (offline, with the setuptools
    already there) and the installed package works against a live phxd."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client-lib",
                       "python")
    # pip needs setuptools and wheel beside it (./dev setup installs Debian's)
    pythons = [py for py in (sys.executable, "/usr/bin/python3")
               if subprocess.run([py, "-c", "import setuptools, wheel, pip"],
                                 capture_output=True).returncode == 0]
    if not pythons:
        raise Skip("no python3 here has pip, setuptools and wheel")
    py = pythons[0]
    target = os.path.join(w, "site")
    # a copy: setuptools writes build/ and *.egg-info beside the sources
    src = shutil.copytree(src, os.path.join(w, "python-src"))
    p = subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-build-isolation",
                        "--no-deps", "--no-index", "--target", target, src],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert p.returncode == 0, p.stderr
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:pip"))
    d.wait_joined("rooms:pip")
    code = ("import phxd, sys; print(phxd.__file__); "
            "print(phxd.Client(sys.argv[1]).push('rooms:pip', 'ping', {}, await_reply=True))")
    p = subprocess.run([py, "-c", code, d.sock], capture_output=True, text=True,
                       timeout=30, env={**os.environ, "PYTHONPATH": target})
    assert p.returncode == 0, p.stderr
    path, reply = p.stdout.splitlines()
    assert path == os.path.join(target, "phxd", "__init__.py"), path
    assert reply == "{'pong': 'pong'}", reply


@test
def unreachable_is_an_error_and_timeouts_none_and_zero_mean_forever_and_poll(w):
    try:
        phxd.Client(os.path.join(w, "nobody.sock"))
        raise AssertionError("no Unreachable")
    except phxd.Error as e:  # one except clause catches everything phxd raises
        assert isinstance(e, phxd.Unreachable) and isinstance(e, ConnectionError), e
        assert e.code == "unreachable" and e.errno != 0, e
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:t"))
    d.wait_joined("rooms:t")
    with phxd.Client(d.sock) as c, c.subscribe("rooms:t", timeout=0) as sub:
        # timeout=0 polls: nothing yet, at once
        t0 = time.monotonic()
        try:
            next(sub)
            raise AssertionError("a message out of nowhere")
        except phxd.Timeout:
            assert time.monotonic() - t0 < 0.5
        c.push("rooms:t", "broadcast", {"n": 1}, await_reply=True)
        got = wait_until(lambda: _poll(sub), what="the message, by polling")
        assert got["payload"] == {"n": 1}, got
        # timeout=None waits as long as it takes: here, for a message 0.5 s away
        sub.timeout = None
        later = threading.Timer(0.5, lambda: c.push("rooms:t", "broadcast", {"n": 2}))
        later.start()
        t0 = time.monotonic()
        assert next(sub)["payload"] == {"n": 2} and time.monotonic() - t0 >= 0.4
        later.join()
        # a request polled with timeout=0 may miss its answer; the client
        # stays in step all the same (the late answer is skipped)
        try:
            c.request("status", timeout=0)
        except phxd.Timeout:
            pass
        assert c.request("status", timeout=None)["connections"][0]["name"] == "demo"


def _poll(sub):
    try:
        return next(sub)
    except phxd.Timeout:
        return None


@test
def every_daemon_error_code_has_its_exception(w):
    """One class per code of ipc/phxd-ipc.h, each a phxd.Error, raised for it."""
    import re
    header = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "ipc",
                          "phxd-ipc.h")
    with open(header) as f:
        codes = re.findall(r'#define PHXD_E_\w+ "(\w+)"', f.read())
    assert len(codes) >= 20, codes
    for code in codes:
        cls = phxd._ERRORS.get(code)
        assert cls is not None and issubclass(cls, phxd.Error), code
        assert cls.__name__ in phxd.__all__, cls
        assert f"({code})" in cls.__doc__, cls
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:e"))
    d.wait_joined("rooms:e")
    with phxd.Client(d.sock) as c:
        for call, cls in ((lambda: c.push("rooms:none", "x"), phxd.NotJoined),
                          (lambda: c.request("teleport"), phxd.UnknownOp),
                          (lambda: c.request("push", topic=5), phxd.BadRequest),
                          (lambda: c.status(conn="nope"), phxd.UnknownConnection),
                          (lambda: c.request("unsubscribe", sub=999), phxd.NoSuchSubscription)):
            try:
                call()
                raise AssertionError(f"no {cls.__name__}")
            except cls as e:
                assert isinstance(e, phxd.Error) and phxd._ERRORS[e.code] is cls, e


run()
