# SPDX-License-Identifier: MIT
"""Runs inside a booted systemd (tests/system/run starts the container):
installs the built packages and checks phxd as a Debian/systemd service.

Each check appends one JSON line to /results/results.jsonl:
{"name": ..., "ok": true|false, "detail": ...}. A check that fails does not
stop the ones after it, except where they need what it set up."""
import glob
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback

RESULTS = "/results/results.jsonl"
SOCK = "/run/phxd/phxd.sock"
PORT = 4000
TOKEN = "credential-7c1f"
DROPIN = "/etc/systemd/system/phxd.service.d/50-systemtest.conf"
CONF = "/etc/phxd/phxd.conf"
GOOD_CONF = f"""[phxd]
log_level = info

[connection demo]
url = ws://127.0.0.1:{PORT}/socket
param.token_file = /run/credentials/phxd.service/token
join = rooms:sys
"""
failed_setup = []


class Skipped(str):
    """Returned by a check that cannot run here (said why, counted as skipped)."""


def sh(*args, check=True, timeout=60, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.strip()}"
                             f" {p.stdout.strip()}"[:2000])
    return p


def show(unit, prop):
    return sh("systemctl", "show", "-P", prop, unit).stdout.strip()


def wait_until(pred, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def request(op, **fields):
    """One request on a fresh connection; the answer object."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(SOCK)
        s.sendall((json.dumps({"id": 1, "op": op, **fields}) + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"phxd closed the connection without answering {op}")
            buf += chunk
        return json.loads(buf.split(b"\n", 1)[0])


def topics_state():
    try:
        r = request("status")
    except OSError:
        return {}
    return {t["topic"]: t["state"] for c in r["result"]["connections"] for t in c["topics"]}


def joined():
    return topics_state().get("rooms:sys") == "joined"


def record(name, ok, detail=""):
    """ok: True, False, or None for a check that could not run here."""
    with open(RESULTS, "a") as f:
        f.write(json.dumps({"name": name, "ok": ok, "detail": detail}) + "\n")


def check(fn):
    name = fn.__name__
    if failed_setup:
        record(name, False, f"not run: {failed_setup[0]} failed")
        return fn
    t0 = time.monotonic()
    try:
        detail = fn() or ""
        if isinstance(detail, Skipped):
            record(name, None, str(detail))
            return fn
        record(name, True, f"{detail} ({time.monotonic() - t0:.1f} s)".strip())
    except Exception as e:  # noqa: BLE001 - every failure is a result
        record(name, False, f"{e}\n{traceback.format_exc(limit=3)}")
        # what the units said, for the log (not the result)
        for cmd in (["systemctl", "status", "--no-pager", "phxd.socket", "phxd.service"],
                    ["journalctl", "--no-pager", "-n", "40", "-u", "phxd.service",
                     "-u", "phxd.socket"]):
            p = subprocess.run(cmd, capture_output=True, text=True)
            print(f"--- {name} failed: {' '.join(cmd)}\n{p.stdout}{p.stderr}", flush=True)
        if getattr(fn, "setup", False):
            failed_setup.append(name)
    return fn


def setup(fn):
    fn.setup = True
    return fn


# ---- the checks, in order ---------------------------------------------------

@check
@setup
def apt_install_gives_a_running_socket_activated_service():
    debs = sorted(glob.glob("/debs/*.deb"))
    assert debs, "no packages in /debs"
    # A container image's policy-rc.d (exit 101) forbids maintainer scripts
    # to start services; a real Debian 12 has none. Gone from the overlay only.
    note = ""
    if os.path.exists("/usr/sbin/policy-rc.d"):
        os.remove("/usr/sbin/policy-rc.d")
        note = ", the image's policy-rc.d removed first"
    sh("apt-get", "install", "-y", "--no-install-recommends", *debs, timeout=300,
       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    for unit in ("phxd.socket", "phxd.service"):
        assert sh("systemctl", "is-enabled", unit).stdout.strip() == "enabled", unit
        wait_until(lambda: show(unit, "ActiveState") == "active", f"{unit} active")
    assert show("phxd.socket", "Listen").startswith(SOCK), show("phxd.socket", "Listen")
    conffiles = sh("dpkg-query", "-W", "-f=${Conffiles}", "phxd").stdout
    assert "/etc/phxd/phxd.conf" in conffiles, conffiles
    return f"{len(debs)} packages{note}"


@check
def notify_service_is_active_with_its_status_line():
    assert show("phxd.service", "Type") == "notify"
    assert show("phxd.service", "SubState") == "running"
    status = wait_until(lambda: show("phxd.service", "StatusText"), "a STATUS= line")
    assert re.fullmatch(r"0/0 connections up, 0/0 topics joined, \d+ clients", status), status
    return status


@check
def debian_python3_imports_the_packaged_module():
    p = sh("/usr/bin/python3", "-c",
           "import phxd, sys; c = phxd.Client(sys.argv[1]); "
           "print(phxd.__file__); print(c.status()['daemon'])", SOCK)
    path, daemon = p.stdout.split(None, 1)
    assert path == "/usr/lib/python3/dist-packages/phxd/__init__.py", path
    assert daemon.startswith("phxd "), p.stdout
    return path


@check
@setup
def load_credential_reaches_the_server_as_a_connect_param():
    sh("systemd-run", "--unit=phxd-testserver", "-p", "DynamicUser=yes",
       "/usr/bin/phxd-testserver", "--port", str(PORT))
    os.makedirs("/etc/phxd-test", exist_ok=True)
    with open("/etc/phxd-test/token", "w") as f:
        f.write(TOKEN + "\n")
    os.chmod("/etc/phxd-test/token", 0o600)
    os.makedirs(os.path.dirname(DROPIN), exist_ok=True)
    with open(DROPIN, "w") as f:
        f.write("[Service]\nLoadCredential=token:/etc/phxd-test/token\n"
                "WatchdogSec=2s\nTimeoutAbortSec=1s\nRestartSec=100ms\n"
                # the checks restart phxd more often than the default
                # start limit (5 in 10 s) allows
                "[Unit]\nStartLimitIntervalSec=0\n")
    with open(CONF, "w") as f:
        f.write(GOOD_CONF)
    sh("systemctl", "daemon-reload")
    sh("systemctl", "restart", "phxd.service")
    wait_until(joined, "rooms:sys joined")
    r = request("push", topic="rooms:sys", event="whoami", **{"await": True})
    params = r["result"]["response"]["params"]
    assert params.get("token") == TOKEN, params
    return f"token param {params['token']!r}"


@check
def durable_pushes_are_kept_in_the_state_directory_across_restarts():
    st = request("status")["result"]["outbox"]
    assert st and st.get("path") == "/var/lib/phxd/outbox.db", st
    info = os.stat("/var/lib/phxd")
    assert info.st_mode & 0o777 == 0o750, oct(info.st_mode)
    assert info.st_uid == int(sh("id", "-u", "phxd").stdout), info
    # stored while the server is away, delivered once it is back after a
    # restart of phxd
    sh("systemctl", "stop", "phxd-testserver")
    r = request("push", topic="rooms:sys", event="ping", payload={}, durable=True)
    assert r["ok"] and r["result"]["status"] == "stored", r
    sh("systemctl", "restart", "phxd.service")
    assert request("outbox")["result"]["pending"] == 1
    sh("systemd-run", "--unit=phxd-testserver", "-p", "DynamicUser=yes",
       "/usr/bin/phxd-testserver", "--port", str(PORT))
    wait_until(joined, "rooms:sys joined again")
    wait_until(lambda: request("outbox")["result"]["pending"] == 0, "the stored push delivered")
    return f"outbox {st['path']}"


@check
def status_line_follows_the_connection():
    up = "1/1 connections up, 1/1 topics joined"
    wait_until(lambda: show("phxd.service", "StatusText").startswith(up), up)
    sh("systemctl", "stop", "phxd-testserver")
    down = "0/1 connections up, 0/1 topics joined"
    wait_until(lambda: show("phxd.service", "StatusText").startswith(down), down)
    sh("systemd-run", "--unit=phxd-testserver", "-p", "DynamicUser=yes",
       "/usr/bin/phxd-testserver", "--port", str(PORT))
    wait_until(lambda: show("phxd.service", "StatusText").startswith(up), up + " again", 30)
    wait_until(joined, "rooms:sys joined again")
    return show("phxd.service", "StatusText")


@check
def socket_activation_starts_phxd_and_loses_no_request_across_restarts():
    sh("systemctl", "stop", "phxd.service")
    assert show("phxd.service", "ActiveState") == "inactive"
    assert show("phxd.socket", "ActiveState") == "active"
    # the first client starts phxd and is answered by it
    r = request("hello", version=1)
    assert r["ok"] and r["result"]["connections"] == ["demo"], r
    assert show("phxd.service", "ActiveState") == "active"
    answered, refused, lost, stop = [0], [0], [], threading.Event()

    def client_loop():
        while not stop.is_set():
            try:
                r = request("status")
            except Exception as e:  # noqa: BLE001 - no answer at all
                lost.append(repr(e))
                continue
            time.sleep(0.001)  # a busy client, not one that starves the others
            if r["ok"]:
                answered[0] += 1
            elif r["error"]["code"] == "shutting_down":
                refused[0] += 1  # sent to the phxd that was stopping: told so
            else:
                lost.append(repr(r))

    t = threading.Thread(target=client_loop)
    t.start()
    pids, took = set(), []
    try:
        for _ in range(3):
            time.sleep(0.3)
            before = answered[0]
            t0 = time.monotonic()
            sh("systemctl", "restart", "phxd.service")
            took.append(time.monotonic() - t0)
            pids.add(show("phxd.service", "MainPID"))
            wait_until(lambda: answered[0] > before, "answers after a restart")
    finally:
        stop.set()
        t.join()
    assert not lost, f"{len(lost)} requests lost: {lost[:3]}"
    assert len(pids) == 3, pids
    wait_until(joined, "rooms:sys joined after the restarts")
    return (f"{answered[0]} requests answered across 3 restarts, {refused[0]} told "
            "shutting_down, 0 lost; systemctl restart took "
            + ", ".join(f"{t:.1f}" for t in took) + " s")


@check
def reload_of_a_broken_config_fails_and_the_old_one_serves():
    pid = show("phxd.service", "MainPID")
    with open(CONF, "w") as f:
        f.write("[connection demo]\nurl = gopher://nowhere\n")
    p = sh("systemctl", "reload", "phxd.service", check=False)
    assert p.returncode != 0, "systemctl reload succeeded with a broken config"
    assert show("phxd.service", "MainPID") == pid
    assert show("phxd.service", "ActiveState") == "active"
    assert joined(), topics_state()
    r = request("push", topic="rooms:sys", event="ping", **{"await": True})
    assert r["ok"] and r["result"]["response"] == {"pong": "pong"}, r
    with open(CONF, "w") as f:
        f.write(GOOD_CONF.replace("join = rooms:sys", "join = rooms:sys\njoin = rooms:more"))
    sh("systemctl", "reload", "phxd.service")
    wait_until(lambda: topics_state().get("rooms:more") == "joined", "rooms:more joined")
    return f"reload refused: {p.stderr.strip()[:200]}"


@check
def journal_has_warnings_at_warning_and_info_below():
    def journal(prio):
        return sh("journalctl", "-u", "phxd.service", "-p", prio, "-o", "cat",
                  "--no-pager").stdout
    warnings = wait_until(lambda: "keeping the running configuration" in journal("warning")
                          and journal("warning"), "the refusal in the journal")
    assert "configuration reloaded" not in warnings, warnings
    assert "ready:" not in warnings, warnings
    info = journal("info")
    assert "configuration reloaded" in info and "keeping the running configuration" in info
    refused = [line for line in warnings.splitlines() if "keeping" in line][0]
    return refused[:160]


@check
def group_phxd_may_use_the_socket_and_others_may_not():
    sh("useradd", "--no-create-home", "--groups", "phxd", "member")
    sh("useradd", "--no-create-home", "outsider")
    p = sh("runuser", "-u", "member", "--", "phxctl", "status", check=False)
    assert p.returncode == 0 and "rooms:sys" in p.stdout, p
    p = sh("runuser", "-u", "outsider", "--", "phxctl", "status", check=False)
    assert p.returncode == 3, p
    assert "ermission denied" in p.stderr, p.stderr
    return p.stderr.strip()[:160]


@check
def watchdog_restarts_a_phxd_that_stops_answering():
    pid = show("phxd.service", "MainPID")
    restarts = int(show("phxd.service", "NRestarts"))
    os.kill(int(pid), 19)  # SIGSTOP: neither thread runs
    t0 = time.monotonic()
    wait_until(lambda: show("phxd.service", "MainPID") not in (pid, "0")
               and show("phxd.service", "ActiveState") == "active", "a new phxd", 30)
    took = time.monotonic() - t0
    assert int(show("phxd.service", "NRestarts")) == restarts + 1
    log = sh("journalctl", "-u", "phxd.service", "-o", "cat", "--no-pager").stdout
    assert "Watchdog timeout" in log, log[-2000:]
    wait_until(joined, "rooms:sys joined after the watchdog restart")
    return f"restarted {took:.1f} s after SIGSTOP (WatchdogSec=2s)"


@check
def security_exposure_at_most_1_5():
    p = sh("systemd-analyze", "security", "--no-pager", "phxd.service", check=False)
    m = re.search(r"Overall exposure level for phxd\.service: ([0-9.]+) (\S+)", p.stdout)
    assert m, p.stdout[-2000:]
    with open("/results/security.txt", "w") as f:
        f.write(p.stdout)
    assert float(m[1]) <= 1.5, m[0]
    return m[0]


@check
def apt_purge_removes_it_cleanly():
    sh("systemctl", "stop", "phxd-testserver")
    sh("apt-get", "purge", "-y", "phxd", "libphxd0", "phxd-testserver", "python3-phxd",
       timeout=300, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    left = sh("dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Package}\n", check=False).stdout
    # purged packages are gone, or "pn"/"un" (known, not installed)
    left = [line for line in left.splitlines()
            if "phxd" in line and not line.startswith(("pn", "un"))]
    assert not left, left
    for path in ("/etc/phxd", "/var/lib/phxd", "/usr/bin/phxd", "/usr/bin/phxctl",
                 "/lib/systemd/system/phxd.service",
                 "/lib/systemd/system/phxd.socket", "/usr/lib/python3/dist-packages/phxd",
                 "/etc/systemd/system/sockets.target.wants/phxd.socket",
                 "/etc/systemd/system/multi-user.target.wants/phxd.service"):
        assert not os.path.lexists(path), f"{path} is left"
    for unit in ("phxd.service", "phxd.socket"):
        assert show(unit, "ActiveState") in ("inactive", "failed"), unit
        assert show(unit, "LoadState") == "not-found", show(unit, "LoadState")
    assert not os.path.exists(SOCK)


@check
def readme_source_install_gives_a_working_service():
    """The README's from-source steps, run as written (in a build directory
    configured with the README's flags, bound in by tests/system/run)."""
    try:
        with open("/results/source-install.json") as f:
            where = json.load(f)
    except FileNotFoundError:
        return Skipped("no source build was given to tests/system/run")
    with open(os.path.join(where["srcdir"], "README.md")) as f:
        readme = f.read()
    block = readme.split("Or from source, for a system install:\n\n", 1)[1].split("\n\n")[0]
    steps = [line.strip().split("  #", 1)[0].strip() for line in block.splitlines()]
    assert steps[0].startswith("autoreconf -fi && ./configure "), steps
    wanted = steps[0].split("./configure ", 1)[1].split()
    configured = sh("./config.status", "--config", cwd=where["builddir"]).stdout
    configured = [f.strip("'") for f in configured.split()]
    for flag in wanted:
        assert flag in configured, f"README flag {flag} not in {configured}"
    for step in steps[1:]:
        sh("bash", "-ec", step, cwd=where["builddir"], timeout=300)
    for unit in ("phxd.socket", "phxd.service"):
        wait_until(lambda: show(unit, "ActiveState") == "active", f"{unit} active")
    ldd = sh("ldd", "/usr/bin/phxctl").stdout
    lib = re.search(r"libphxd\.so\.0 => (\S+)", ldd)
    assert lib and "not found" not in ldd, ldd
    assert os.path.realpath(lib[1]) == os.path.realpath("/usr/lib/libphxd.so.0"), ldd
    p = sh("phxctl", "status")
    assert p.stdout.startswith("* phxd "), p.stdout
    p = sh("/usr/bin/python3", "-c", "import phxd, sys; print(phxd.__file__); "
           "print(phxd.Client(sys.argv[1]).status()['daemon'])", SOCK)
    assert p.stdout.split("\n")[0] == "/usr/lib/python3/dist-packages/phxd/__init__.py", p.stdout
    assert show("phxd.service", "ExecStart").find("/usr/bin/phxd -c /etc/phxd/phxd.conf") >= 0
    assert os.path.exists("/etc/phxd/phxd.conf")
    return f"{len(steps) - 1} steps after configure; {show('phxd.service', 'StatusText')}"


with open("/results/done", "w") as f:
    f.write("ok\n")
sys.exit(0)
