#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/run end to end, quick sizes, two rounds: every peer runs every
scenario and every table comes out (no figure is judged: the bench is for
people, timing assertions have no place in tests)."""
import os
import re
import shutil
import subprocess

from harness import BUILD, Skip, run, test

# bench/run's name for the fan-out latency target at 100 subscribers
FAN_100 = ("fan-out, 100 subs at 2000/s: p99 − the more of 1 ms and the p99 of one write per "
           "copy, through a hop ≤ 0")
BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "run")


@test
def bench_run_quick_prints_every_table(w):
    if not os.path.exists(os.path.join(BUILD, "bench", "floor")):
        raise Skip("bench/floor is not built here")
    try:
        p = subprocess.run([BENCH, "--build", BUILD, "--quick", "--rounds", "2", "--no-build"],
                           capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        # bench/run says on stderr which run it is in, and bounds each
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        raise AssertionError(f"bench/run still running after 600 s: {(err or '')[-3000:]}")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    for title in ("This machine's wake-ups", "Fire pushes", "Awaited round trips",
                  "Awaited round trips on one CPU",
                  "Received messages (", "Received messages over wss", "Fan-out", "topics: start to all joined",
                  "phxd itself"):
        assert f"### {title}" in out or title in out, (title, out)
    # bench/run measures phoenix.js when node and the npm packages are there
    modules = os.path.join(os.path.dirname(BENCH), "..", "tests", "conformance", "node_modules")
    node = shutil.which("node") is not None and os.path.isdir(os.path.join(modules, "phoenix"))
    assert ("phoenix.js: not measured" in out) == (not node), out[:600]
    rows = {"fire": ["floor", "phxd + libphxd", "phxd + libphxd, notifications",
                     "phxd + Python", "phxd + Python, notifications", "phxd + phxctl push -l"] +
                    (["phoenix.js"] if node else []),
            }
    fire = out.split("### Fire pushes")[1].split("###")[0]
    for peer in rows["fire"]:
        line = next((l for l in fire.splitlines() if l.startswith(f"| {peer} |")), None)
        assert line is not None and re.search(r"\| [0-9.]+ µs \|", line), (peer, fire)
    # awaited through a phxd that busy-polls, and through one that does not;
    # and again with every process on one CPU
    for title, peers in (("Awaited round trips (", ("phxd + libphxd",
                                                   "phxd + libphxd, busy polling")),
                         ("Awaited round trips on one CPU", ("floor", "floor through a relay",
                                                             "phxd + libphxd", "phxd + Python"))):
        awaits = out.split(f"### {title}")[1].split("###")[0]
        for peer in peers:
            line = next((l for l in awaits.splitlines() if l.startswith(f"| {peer} |")), None)
            assert line is not None and len(re.findall(r"\| [0-9.]+ µs", line)) >= 3, (peer, awaits)
    # the busy-polling phxd polls as long as this machine's wake-ups ask
    # (bench/README.md): said in the title, in steps of 50 µs, 100 to 1000
    busy = re.search(r"### Awaited round trips \(.*busy_poll_us = ([0-9]+),", out)
    assert busy and 100 <= int(busy[1]) <= 1000 and int(busy[1]) % 50 == 0, out[:2000]
    # the relay (the floor of any hop) runs beside phxd, its own CPU counted
    for title in ("Fire pushes", "Awaited round trips", "Received messages ("):
        table = out.split(f"### {title}")[1].split("###")[0]
        line = next((l for l in table.splitlines()
                     if l.startswith("| floor through a relay |")), None)
        assert line is not None and len(re.findall(r"\| [0-9.]+ µs", line)) >= 2, (title, table)
    # over wss too: the floor, phoenix.js and phxd each received every message
    wss = out.split("### Received messages over wss")[1].split("###")[0]
    for peer in ["floor", "phxd + libphxd"] + (["phoenix.js"] if node else []):
        line = next((l for l in wss.splitlines() if l.startswith(f"| {peer} |")), None)
        assert line is not None and re.search(r"\| [0-9.]+ µs \|", line), (peer, wss)
    # the wake-ups every hop is built of: what one costs, and how long it takes
    wake = out.split("### This machine's wake-ups")[1].split("###")[0]
    figures = [float(v) for v in re.findall(r"\| ([0-9.]+) µs", wake)]
    assert len(figures) == 4 and figures[0] > 0 and 0 < figures[1] <= figures[2] <= figures[3], wake
    fan = out.split("### Fan-out")[1].split("###")[0]
    assert fan.count("| phxd + libphxd |") == 3 and "| 0 |" in fan, fan
    # per message, how long the hop (phxd, bench/hop) and the test server
    # waited for a CPU: read off their schedstat; the bare writer has neither
    hops = 0
    for line in fan.splitlines():
        if "| phxd + libphxd |" in line or "| one write per copy, through a hop |" in line:
            assert re.search(r"\| [0-9.]+ µs \| [0-9.]+ µs \|$", line), line
            hops += 1
        if "| one write per copy |" in line:
            assert line.endswith("| — | — |"), line
    assert hops == 2 * 3, fan
    # per message, by its seq: the p99 of its first copy's latency and of
    # how long its last came after the first, neither more than the
    # slowest copy; with one subscriber a message has one copy, no spread
    label, checked = None, 0
    for line in fan.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 11 or cells[1] in ("peer", "---"):
            continue
        label = cells[0] or label
        if cells[1] == "phoenix.js" and not node:
            continue
        most, first, spread = (float(re.fullmatch(r"([0-9.]+) µs", c)[1]) for c in cells[4:7])
        assert 0 < first <= most and spread <= most, (label, line)
        assert (spread == 0) == (label == "1 sub at 2000/s"), (label, line)
        checked += 1
    assert checked == 3 * (5 if node else 4), fan
    daemon = out.split("### phxd itself")[1].split("###")[0]
    assert re.search(r"start to READY=1 \| [0-9.]+ ms", daemon), daemon
    # the targets are read off the tables: what --quick measures is judged,
    # the sizes it does not run are said to be not measured
    goals = {}
    for l in out.split("### Targets")[1].split("\n\n")[1].splitlines()[2:]:
        cells = [c.strip() for c in l.strip("|").split("|")]
        goals[cells[0]] = cells[1:]
    judged = ["fire push, phxd + libphxd: CPU ≤ 1.5× the floor's",
              "await, phxd + libphxd: p99 ≤ the floor through a relay's + 15 µs",
              "await, phxd + libphxd, busy polling: p50 ≤ the floor's + 15 µs",
              "await on one CPU, phxd + libphxd: p50 ≤ the floor through a relay's + 15 µs",
              "received message, phxd + libphxd: CPU ≤ 1.5× the floor's",
              FAN_100,
              "fan-out through phxd: no message dropped",
              # the issue's own figures, beside the forms this machine allows
              "await, phxd + libphxd: p99 ≤ 100 µs (the issue's figure)",
              "await, phxd + libphxd: p50 ≤ the floor's + 15 µs (the issue's figure)",
              "fan-out, 100 subs at 2000/s: p99 ≤ 1 ms (the issue's figure)",
              "fan-out, 100 subs at 2000/s: phxd's CPU per copy ≤ 0.5 µs (the issue's figure)",
              "memory per joined topic ≤ 1 KiB", "idle private RSS ≤ 2 MiB"]
    for name in judged:
        # "met" or "not met", with the limit applied where a target has two
        assert name in goals and re.fullmatch(r"(met|not met)( \(against .+\))?",
                                              goals[name][2]), (name, goals)
    # each judged figure shows its rounds' spread, and with two rounds the
    # medians' value lies within it (a median of two is their mean)
    def number(cell):
        return float(re.match(r"-?[0-9.]+", cell).group())
    for name in judged:
        value, spread, verdict, rounds = goals[name]
        if name == "fan-out through phxd: no message dropped":
            # a sum over every round, not a median
            assert spread == "—" and rounds == "—", (name, goals[name])
            continue
        least, most = spread.split(" – ")
        assert number(least) <= number(value) <= number(most), (name, goals[name])
        # how many rounds (or runs: the await's three a round) met it on
        # their own: all of them, and their median meets it too; none,
        # and it cannot
        met = re.fullmatch(r"([0-9]+) of ([0-9]+)", rounds)
        assert met and 0 <= int(met[1]) <= int(met[2]) >= 2, (name, goals[name])
        if int(met[1]) in (0, int(met[2])):
            assert verdict.startswith("met") == (met[1] != "0"), (name, goals[name])
    # each round holds phxd's fan-out p99 to 1 ms, or to the hop's p99 of
    # that round where that is more; the verdict is the median of the two
    # rounds' excesses (their mean), so it is phxd's p99 (the table's, a
    # median of two) less 1 ms where the hop met 1 ms in both rounds, and
    # no more than that where it did not; the hop's p99 over 1 ms in the
    # table means it missed 1 ms in at least one round
    label, p99s = None, {}
    for l in fan.splitlines():
        cells = [c.strip() for c in l.strip("|").split("|")]
        if len(cells) > 3 and cells[0]:
            label = cells[0]
        # (phoenix.js, when not measured, has no figures)
        if label == "100 subs at 2000/s" and cells[1:2] in (["phxd + libphxd"],
                                                            ["one write per copy, through a hop"]):
            p99s[cells[1]] = number(cells[3])
    hop_p99, phxd_p99 = p99s.get("one write per copy, through a hop"), p99s.get("phxd + libphxd")
    assert hop_p99 is not None and phxd_p99 is not None, fan
    value, _, verdict, _ = goals[FAN_100]
    held = re.search(r"\(against the hop's in ([0-9]+) of 2 rounds\)", verdict)
    assert held is None or 1 <= int(held[1]) <= 2, verdict
    assert hop_p99 <= 1000 or held, (hop_p99, verdict)
    if held:
        assert number(value) <= phxd_p99 - 1000 + 0.02, (phxd_p99, goals[FAN_100])
    else:
        assert abs(number(value) - (phxd_p99 - 1000)) <= 0.02, (phxd_p99, goals[FAN_100])
    assert (verdict.split(" (")[0] == "met") == (number(value) <= 0), goals[FAN_100]
    # the issue's own figure is phxd's p99 as the fan-out table gives it
    issue = goals["fan-out, 100 subs at 2000/s: p99 ≤ 1 ms (the issue's figure)"]
    assert abs(number(issue[0]) - phxd_p99) <= 0.01, (phxd_p99, issue)
    assert issue[2] == ("met" if phxd_p99 <= 1000 else "not met"), (phxd_p99, issue)
    for name in ("fan-out, 1000 subs at 1000/s: p99 − the more of 5 ms and the p99 of one "
                 "write per copy, through a hop ≤ 0",
                 "fan-out, 1000 subs at 1000/s: p99 ≤ 5 ms (the issue's figure)",
                 "10,000 topics: joined within 1 s of exec"):
        assert goals.get(name) == ["—", "—", "not measured", "—"], (name, goals)


run()
