"""libphxd (client-lib/) against a live phxd: tests/integration/libphxd-check.c
exercises the blocking, stream and non-blocking calls; phxctl is built on it."""
import os
import subprocess

from harness import BUILD, Daemon, TestServer, config, run, test

CHECK = os.path.join(BUILD, "tests", "integration", "libphxd-check")


@test
def libphxd_against_a_live_daemon(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:c"))
    d.wait_joined("rooms:c")
    p = subprocess.run([CHECK, d.sock], capture_output=True, text=True, timeout=60)
    print(p.stdout, end="")
    assert p.returncode == 0 and "0 failed" in p.stdout, p.stdout + p.stderr


@test
def example_program_builds_against_the_header(w):
    # the documented example compiles as written
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client-lib")
    out = os.path.join(w, "phxd-example.o")
    p = subprocess.run(["cc", "-Wall", "-Werror", "-I", src, "-c",
                        os.path.join(src, "examples", "phxd-example.c"), "-o", out],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


run()
