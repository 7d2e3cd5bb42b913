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
def a_backlog_and_a_long_line_arrive_whole_and_in_order(w):
    """A subscriber that was away reads its backlog many lines a read, and a
    line longer than any read: each once, whole, in order."""
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"))
    d.wait_joined("rooms:a")
    c = phxd.Client(d.sock)
    n, pad = 300, 200_000
    with c.subscribe("rooms:a", events=["broadcast"], count=n + 2, timeout=10) as sub:
        for i in range(n):
            c.push("rooms:a", "broadcast", {"seq": i, "pad": "%0100d" % i}, await_reply=True)
        c.push("rooms:a", "broadcast", {"seq": n, "pad": "x" * pad}, await_reply=True)
        c.push("rooms:a", "broadcast", {"seq": n + 1}, await_reply=True)
        got = [m["payload"] for m in sub]
    assert [p["seq"] for p in got] == list(range(n + 2)), [p["seq"] for p in got][:20]
    assert got[n]["pad"] == "x" * pad and got[7]["pad"] == "%0100d" % 7


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
    for name in ("aio.py", "py.typed"):
        assert os.path.exists(os.path.join(target, "phxd", name)), name


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


@test
def holds_and_leaves(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:cfg"))
    d.wait_joined("rooms:cfg")
    held = phxd.Client(d.sock)
    held.join("rooms:held", hold="client")
    with phxd.Client(d.sock) as c:
        topics = {t["topic"]: t for t in c.status()["connections"][0]["topics"]}
        assert topics["rooms:held"]["wanted_by"]["clients"] == 1, topics
        assert c.leave("rooms:cfg") is False          # the config wants it
        c.join("rooms:rt")
        assert c.leave("rooms:rt") is True
        held.close()
        wait_until(lambda: "rooms:held" not in d.topic_states(), what="the hold released")
        with c.subscribe("rooms:sj", join=True, timeout=5) as sub:
            wait_until(lambda: d.topic_states().get("rooms:sj") == "joined",
                       what="joined by the subscription")
            c.push("rooms:sj", "broadcast", {"n": 1})
            assert next(sub)["payload"] == {"n": 1}
        wait_until(lambda: "rooms:sj" not in d.topic_states(), what="released with the stream")
        try:
            c.join("rooms:x", hold="forever")
            raise AssertionError("a bad hold was taken")
        except phxd.BadRequest:
            pass


@test
def notifications_are_not_answered_and_their_failures_are_events(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "load:py"))
    d.wait_joined("load:py")
    with phxd.Client(d.sock) as c, c.events(timeout=5) as ev:
        before = c.push("load:py", "count", {}, await_reply=True)["received"]
        for i in range(200):
            c.notify("load:py", "sink", {"i": i})
        c.notify("rooms:none", "x")
        wait_until(lambda: c.push("load:py", "count", {}, await_reply=True)["received"] - before
                   == 200, what="200 notifications counted by the server")
        failed = next(m for m in ev if m["type"] == "push_failed")
        assert (failed["topic"], failed["code"]) == ("rooms:none", "not_joined"), failed


@test
def a_following_subscription_resumes_after_phxd_is_killed(w):
    import queue
    ts = TestServer(w)
    conf = config(ts.url, "rooms:lobby")
    d = Daemon(w, conf)
    d.wait_joined("rooms:lobby")
    got = queue.Queue()
    sub = phxd.Client(d.sock).subscribe("rooms:lobby", events=["broadcast"], follow=True,
                                        timeout=20, count=2)

    def consume():
        try:
            for msg in sub:
                got.put(msg["payload"])
        except Exception as e:  # reported below
            got.put(e)
        got.put(None)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    with phxd.Client(d.sock) as c:
        c.push("rooms:lobby", "broadcast", {"n": 1})
    assert got.get(timeout=10) == {"n": 1}
    d.kill()
    d = Daemon(w, conf)
    d.wait_joined("rooms:lobby")
    wait_until(lambda: d.client().ok("status")["ipc"]["subscriptions"] == 1,
               what="subscribed again")
    with phxd.Client(d.sock) as c:
        c.push("rooms:lobby", "broadcast", {"n": 2})
    assert got.get(timeout=10) == {"n": 2}
    assert got.get(timeout=10) is None       # count=2 across the restart
    t.join(10)
    assert sub.resumed == 1
    sub.close()


@test
def the_type_hints_hold_under_mypy_strict(w):
    if shutil.which("mypy") is None:
        raise Skip("mypy is not installed")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client-lib",
                       "python")
    good = os.path.join(w, "good.py")
    with open(good, "w") as f:
        f.write("""import asyncio
import phxd, phxd.aio

def sync(path: str) -> int:
    with phxd.Client(path, timeout=None) as c:
        c.join("rooms:a", {"k": 1}, hold="client")
        reply = c.push("rooms:a", "ping", {}, await_reply=True)
        left: bool = c.leave("rooms:a")
        for msg in c.subscribe("rooms:*", count=1, follow=True):
            print(msg["payload"], reply, left)
        return len(c.status()["connections"])

async def aio(path: str) -> None:
    async with phxd.aio.Client(path) as c:
        await c.push("rooms:a", "ping")
        async with c.subscribe("rooms:a", join=True) as sub:
            async for msg in sub:
                print(msg)

try:
    sync("/x")
except phxd.ReplyError as e:
    print(e.status, e.response)
asyncio.run(aio("/x"))
""")
    bad = os.path.join(w, "bad.py")
    with open(bad, "w") as f:
        f.write("""import phxd
c = phxd.Client()
c.join("rooms:a", hold="forever")
c.push(1, "ping")
""")
    env = {**os.environ, "MYPYPATH": src, "MYPY_CACHE_DIR": os.path.join(w, "cache")}
    p = subprocess.run(["mypy", "--strict", "-p", "phxd"], capture_output=True, text=True,
                       timeout=300, env=env, cwd=w)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run(["mypy", "--strict", good], capture_output=True, text=True, timeout=300,
                       env=env, cwd=w)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run(["mypy", "--strict", bad], capture_output=True, text=True, timeout=300,
                       env=env, cwd=w)
    assert p.returncode == 1, p.stdout + p.stderr
    assert 'bad.py:3: error: Argument "hold"' in p.stdout, p.stdout
    assert 'bad.py:4: error: Argument 1 to "push"' in p.stdout, p.stdout


run()
