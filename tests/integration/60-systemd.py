# SPDX-License-Identifier: MIT
"""The systemd side: units that systemd-analyze accepts, socket activation
through systemd-socket-activate (clients may connect before phxd runs)."""
import os
import shutil
import socket
import subprocess
import time

from harness import (PHXD, Client, Daemon, TestServer, config, notify_socket,
                     run, test, wait_until, _procs)

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


@test
def units_verify_clean(w):
    if shutil.which("systemd-analyze") is None:
        raise AssertionError("systemd-analyze is missing (./dev setup installs systemd)")
    with open(os.path.join(SRC, "systemd", "phxd.service.in")) as f:
        unit = f.read().replace("@bindir@", os.path.dirname(PHXD)).replace("@sysconfdir@", "/etc")
    with open(os.path.join(w, "phxd.service"), "w") as f:
        f.write(unit)
    shutil.copy(os.path.join(SRC, "systemd", "phxd.socket"), w)
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", "phxd.service", "phxd.socket"],
                       cwd=w, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr.strip() == "", p
    assert "Type=notify" in unit and "WatchdogSec=" in unit


@test
def socket_activation(w):
    ts = TestServer(w)
    conf = os.path.join(w, "phxd.conf")
    with open(conf, "w") as f:
        f.write(config(ts.url, "rooms:act"))
    sock = os.path.join(w, "activated.sock")
    log = open(os.path.join(w, "phxd.log"), "w")
    p = subprocess.Popen(["systemd-socket-activate", "-l", sock, PHXD, "-c", conf, "-l", "debug"],
                         stdout=subprocess.DEVNULL, stderr=log)
    _procs.append(p)
    wait_until(lambda: os.path.exists(sock), what="the activation socket")
    # the first client starts phxd and is served by it
    c = Client(sock)
    r = c.request("hello", version=1)
    assert r["ok"] and r["result"]["connections"] == ["demo"], r
    wait_until(lambda: c.ok("status")["connections"][0]["topics"][0]["state"] == "joined",
               what="joined")
    with open(os.path.join(w, "phxd.log")) as f:
        assert "using the socket passed by systemd" in f.read()
    p.terminate()
    assert p.wait(10) == 0
    # systemd owns an activated socket: phxd leaves the file alone
    assert os.path.exists(sock)


@test
def one_config_path_in_the_binary_the_unit_and_the_man_page(w):
    build = os.path.dirname(PHXD)
    helptext = subprocess.run([PHXD, "--help"], capture_output=True, text=True).stdout
    default = helptext.split("configuration file (default ", 1)[1].split(")", 1)[0]
    assert default.endswith("/phxd/phxd.conf"), default
    with open(os.path.join(build, "systemd", "phxd.service")) as f:
        start = [l for l in f.read().splitlines() if l.startswith("ExecStart=")]
    assert len(start) == 1 and start[0].endswith(f"/phxd -c {default}"), start
    with open(os.path.join(build, "docs", "man", "phxd.8")) as f:
        roff = f.read().replace("\\&", "").replace("\\-", "-")
    assert default in roff, default


@test
def watchdog_is_withheld_while_the_websocket_thread_is_stuck(w):
    """The watchdog hears from phxd only while both threads make progress.
    A ca_file that is a FIFO nobody writes to (standing in for a file on a
    hung network filesystem) blocks the websocket thread where it reads the
    file; the main loop still runs, and must stop pinging."""
    ns_path, ns = notify_socket(w, 0.1)
    fifo = os.path.join(w, "ca.fifo")
    os.mkfifo(fifo)
    d = Daemon(w, config("wss://127.0.0.1:1/socket", "rooms:a", extra=f"ca_file = {fifo}"),
               env={"NOTIFY_SOCKET": ns_path, "WATCHDOG_USEC": "200000"})

    def pings(seconds):
        n, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                n += ns.recv(4096).decode().count("WATCHDOG=1")
            except socket.timeout:
                pass
        return n

    d.wait_log("watchdog: the websocket thread makes no progress; not pinging")
    pings(0.2)  # what was sent before
    assert pings(1.0) == 0, "WATCHDOG=1 while the websocket thread is stuck"
    assert d.client().ok("status")["connections"], "the main loop stopped too"
    # a writer comes (the open ends), the path becomes a plain file for the
    # next attempts, the writer goes (the read ends): pings resume
    fd = os.open(fifo, os.O_WRONLY)
    with open(fifo + ".plain", "w"):
        pass
    os.rename(fifo + ".plain", fifo)
    os.close(fd)
    assert pings(1.0) >= 2, "no WATCHDOG=1 after the thread came back"
    d.wait_log("watchdog: the websocket thread makes progress again")
    assert d.stop() == 0


@test
def a_manager_that_stops_reading_never_blocks_phxd(w):
    """The notify socket's queue fills (a stuck manager; the kernel queues
    net.unix.max_dgram_qlen datagrams): phxd goes on serving, keeps the
    newest STATUS= and sends it once the manager reads again."""
    ns_path, ns = notify_socket(w, 2)
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"), env={"NOTIFY_SOCKET": ns_path})
    d.wait_joined("rooms:a")
    with open("/proc/sys/net/unix/max_dgram_qlen") as f:
        qlen = int(f.read())
    # each client that comes and goes changes the client count in STATUS=
    held = []
    for _ in range(qlen * 3 + 10):
        c = d.client()
        c.ok("status")
        held.append(c)
    start = time.monotonic()
    assert d.client().ok("status")["ipc"]["clients"] == len(held) + 1
    assert time.monotonic() - start < 1, "phxd blocked on the notify socket"
    for c in held:
        c.close()
    wait_until(lambda: d.client().ok("status")["ipc"]["clients"] == 1, what="clients gone")
    d.wait_log("notify: the manager's queue is full")
    # the manager reads again: what phxd kept arrives, the newest STATUS= last
    final = "STATUS=1/1 connections up, 1/1 topics joined, 0 clients"
    statuses = []
    ns.settimeout(2)   # phxd sends again every 200 ms: a recv timeout fails the test
    while final not in statuses:
        msg = ns.recv(4096).decode()
        statuses += [line for line in msg.split("\n") if line.startswith("STATUS=")]
    assert len(statuses) <= qlen + 2, statuses   # the queue, and what phxd kept
    start = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - start < 3


run()
