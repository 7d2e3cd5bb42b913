# SPDX-License-Identifier: MIT
"""The systemd side: units that systemd-analyze accepts, socket activation
through systemd-socket-activate (clients may connect before phxd runs)."""
import os
import shutil
import socket
import subprocess
import time

from harness import PHXD, Client, TestServer, config, run, test, wait_until, _procs

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


run()
