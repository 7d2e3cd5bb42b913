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
def a_ca_file_that_hangs_stalls_only_its_own_connection(w):
    """TLS files are read off the loop. A ca_file that is a FIFO nobody
    writes to (standing in for a file on a hung network filesystem) holds
    up its own connection only: another connection joins and carries
    pushes, clients are answered, the watchdog keeps hearing from phxd.
    Once the read ends, the file's error is named and retried."""
    ns_path, ns = notify_socket(w, 0.1)
    ts = TestServer(w)
    fifo = os.path.join(w, "ca.fifo")
    os.mkfifo(fifo)
    conf = (config("wss://127.0.0.1:1/socket", "rooms:a", conn="stuck",
                   extra=f"ca_file = {fifo}\nreconnect_after_ms = 100")
            + config(ts.url, "rooms:b", conn="fine"))
    d = Daemon(w, conf, env={"NOTIFY_SOCKET": ns_path, "WATCHDOG_USEC": "200000"})

    def pings(seconds):
        n, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                n += ns.recv(4096).decode().count("WATCHDOG=1")
            except socket.timeout:
                pass
        return n

    d.wait_joined("rooms:b")
    assert pings(1.0) >= 3, "the watchdog stopped hearing from phxd"
    r = d.client().ok("push", conn="fine", topic="rooms:b", event="ping", **{"await": True})
    assert r["response"] == {"pong": "pong"}, r
    stuck = [c for c in d.status() if c["name"] == "stuck"][0]
    assert stuck["state"] == "connecting" and stuck["connects"] == 0, stuck
    # a writer comes (the open ends) and goes (the read ends, empty): the
    # file is named; the path becomes a plain empty file for the retries
    fd = os.open(fifo, os.O_WRONLY)
    with open(fifo + ".plain", "w"):
        pass
    os.rename(fifo + ".plain", fifo)
    os.close(fd)
    d.wait_log(f"stuck: cannot set up TLS: ca_file {fifo}")
    assert pings(0.5) >= 1
    assert d.stop() == 0


@test
def a_manager_that_stops_reading_never_blocks_phxd(w):
    """The notify socket's queue fills (a stuck manager; the kernel queues
    net.unix.max_dgram_qlen + 1 datagrams): phxd goes on serving, keeps
    the newest STATUS= and sends it once the manager reads again."""
    ns_path, ns = notify_socket(w, 2)
    with open("/proc/sys/net/unix/max_dgram_qlen") as f:
        qlen = int(f.read())
    # all but one place is taken before phxd starts: its READY=1 and
    # STATUS= overflow the queue however many changes one STATUS= counts
    # (one per loop turn that has no reading left to do)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:
        for _ in range(qlen):
            other.sendto(b"X-OTHER=1", ns_path)
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:a"), env={"NOTIFY_SOCKET": ns_path})
    d.wait_joined("rooms:a")
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
