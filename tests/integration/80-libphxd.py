# SPDX-License-Identifier: MIT
"""libphxd (client-lib/) against a live phxd: tests/integration/libphxd-check.c
exercises the blocking, stream and non-blocking calls; phxctl is built on it."""
import json
import os
import re
import subprocess

from harness import BUILD, Daemon, TestServer, _daemons, config, run, test, wait_until

CHECK = os.path.join(BUILD, "tests", "integration", "libphxd-check")


@test
def libphxd_against_a_live_daemon(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:c", head=f"[phxd]\noutbox = {os.path.join(w, 'o.db')}\n"))
    d.wait_joined("rooms:c")
    p = subprocess.run([CHECK, d.sock], capture_output=True, text=True, timeout=60)
    print(p.stdout, end="")
    assert p.returncode == 0 and "0 failed" in p.stdout, p.stdout + p.stderr


SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client-lib")


def build_example(w, name, *libs):
    """Builds client-lib/examples/NAME.c against this build's libphxd."""
    libdir = os.path.join(BUILD, "client-lib", ".libs")
    exe = os.path.join(w, name)
    # a sanitizer build's library needs its runtime in the program too
    syms = subprocess.run(["nm", "-D", os.path.join(libdir, "libphxd.so")], capture_output=True,
                          text=True).stdout
    san = ["-fsanitize=address,undefined"] if "__asan" in syms else []
    p = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", *san, "-I", SRC,
                        os.path.join(SRC, "examples", f"{name}.c"), "-o", exe,
                        "-L", libdir, "-lphxd", f"-Wl,-rpath,{libdir}", *libs],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return exe


@test
def the_documented_example_builds_links_and_runs(w):
    exe = build_example(w, "phxd-example")
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    d.wait_joined("rooms:lobby")
    ex = subprocess.Popen([exe, "rooms:lobby"], stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, PHXD_SOCKET=d.sock))
    assert ex.stdout.readline().strip() == 'reply: {"pong":"pong"}'
    # it follows the topic: three broadcasts, three lines, then it exits 0
    wait_until(lambda: d.client().ok("status")["ipc"]["subscriptions"] == 1,
               what="the example subscribed")
    lines = []
    for i in range(3):
        # one at a time: each of its three waits takes one message
        ts.control("broadcast", topic="rooms:lobby", event="news", payload=json.dumps({"n": i}))
        lines.append(ex.stdout.readline().strip())
    assert ex.wait(10) == 0
    msgs = [json.loads(l.split("message: ", 1)[1]) for l in lines]
    assert [m["payload"] for m in msgs] == [{"n": 0}, {"n": 1}, {"n": 2}], lines


@test
def a_pending_callback_fires_when_phxd_goes_away(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:c"))
    d.wait_joined("rooms:c")
    p = subprocess.Popen([CHECK, d.sock, "pending-on-drop"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "sent\n"
    wait_until(lambda: d.client().ok("status")["ipc"]["pending"] == 1,
               what="the push pending in phxd")
    d.proc.kill()  # gone without a word: no shutting_down answer
    d.proc.wait()
    _daemons.remove(d)  # killed on purpose: no clean stop to check
    out = p.stdout.read()
    assert p.wait(20) == 0, out
    assert "replies 1 status -1 code unreachable" in out, out


@test
def a_call_after_phxd_went_away_fails_at_once(w):
    """A call on a connection whose phxd has gone (its request written at
    once, into a closed socket) fails as unreachable, without waiting."""
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:c"))
    d.wait_joined("rooms:c")
    p = subprocess.Popen([CHECK, d.sock, "call-after-drop"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "connected\n"
    d.proc.kill()
    d.proc.wait()
    _daemons.remove(d)  # killed on purpose: no clean stop to check
    p.stdin.write("go\n")
    p.stdin.close()
    out = p.stdout.read()
    assert p.wait(20) == 0, out
    assert "code unreachable" in out, out


@test
def the_library_exports_what_the_header_declares_and_nothing_else(w):
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client-lib")
    with open(os.path.join(src, "phxd.h")) as f:
        declared = set(re.findall(r"^[a-z][^(\n]*?\b(phxd_[a-z_]+)\(", f.read(), re.M))
    so = os.path.join(BUILD, "client-lib", ".libs", "libphxd.so")
    nm = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True,
                        check=True).stdout
    exported = {}
    for line in nm.splitlines():
        name = line.split()[-1]
        if name.startswith("__") or name.startswith("_init") or name.startswith("_fini"):
            continue  # a sanitizer build's runtime hooks
        base, _, version = name.partition("@@")
        exported[base] = version
    exported.pop("LIBPHXD_0", None)  # the version node itself
    assert set(exported) == declared, (set(exported) ^ declared)
    assert set(exported.values()) == {"LIBPHXD_0"}, exported


@test
def the_poll_and_libevent_examples_run_their_own_loops(w):
    libevent = subprocess.run(["pkg-config", "--libs", "libevent"], capture_output=True,
                              text=True, check=True).stdout.split()
    exes = [build_example(w, "phxd-poll"), build_example(w, "phxd-libevent", *libevent)]
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:loop"))
    d.wait_joined("rooms:loop")
    for exe in exes:
        ex = subprocess.Popen([exe, "rooms:loop", "2"], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PHXD_SOCKET=d.sock))
        line = ex.stdout.readline().strip()  # the result object: status and response
        assert json.loads(line.split("reply: ", 1)[1]) == \
            {"status": "ok", "response": {"pong": "pong"}}, (exe, line)
        wait_until(lambda: d.client().ok("status")["ipc"]["subscriptions"] == 1,
                   what="the example subscribed")
        for i in range(2):
            ts.control("broadcast", topic="rooms:loop", event="news", payload=json.dumps({"n": i}))
        out = [ex.stdout.readline().strip() for _ in range(2)]
        assert ex.wait(10) == 0, exe
        assert [json.loads(l.split("message: ", 1)[1])["payload"] for l in out] == \
            [{"n": 0}, {"n": 1}], out
        wait_until(lambda: d.client().ok("status")["ipc"]["subscriptions"] == 0,
                   what="the example gone")


run()
