# SPDX-License-Identifier: MIT
"""wss:// with certificate verification: a CA file, the system store, a
wrong host name, and tls_verify = no; and wss streams, read by phxd
itself. Certificates are made here with openssl, valid for a day."""
import os
import subprocess
import time

from harness import (STREAM_HEAD, Daemon, TestServer, config, read_pauses, run, stream_in_order,
                     test, wait_until)


def make_certs(w, san):
    def ssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=w, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=phxd test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
        "-subj", "/CN=localhost")
    with open(os.path.join(w, "san.ext"), "w") as f:
        f.write(f"subjectAltName={san}\n")
    ssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "1", "-extfile", "san.ext")
    return os.path.join(w, "ca.pem"), os.path.join(w, "srv.pem"), os.path.join(w, "srv.key")


def tls_server(w, san="DNS:localhost"):
    ca, cert, key = make_certs(w, san)
    ts = TestServer(w, "--tls-cert", cert, "--tls-key", key)
    assert ts.scheme == "wss"
    return ts, ca


def refused_repeatedly(d, ts, open_elsewhere=0):
    """phxd tried at least three times, and no attempt got a websocket."""
    st = wait_until(lambda: (s := d.status()[0])["attempts"] >= 3 and s, timeout=10,
                    what="three connection attempts")
    assert st["connects"] == 0 and st["state"] in ("waiting", "connecting"), st
    assert st["last_error"], st
    if open_elsewhere is not None:
        assert ts.control("stats")["connections"] == open_elsewhere
    return st


@test
def wss_with_a_ca_file(w):
    ts, ca = tls_server(w)
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:tls",
                         extra=f"ca_file = {ca}"))
    d.wait_joined("rooms:tls")
    r = d.client().ok("push", topic="rooms:tls", event="ping", **{"await": True})
    assert r["response"] == {"pong": "pong"}, r


@test
def wss_unknown_ca_is_refused(w):
    ts, ca = tls_server(w)
    # the system store does not know the test CA
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:tls",
                         extra="reconnect_after_ms = 100"))
    st = refused_repeatedly(d, ts)
    assert st["last_error"] == "TLS: unable to get local issuer certificate", st


@test
def wss_wrong_host_name_is_refused(w):
    ts, ca = tls_server(w, san="DNS:elsewhere.example")
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:tls",
                         extra=f"ca_file = {ca}\nreconnect_after_ms = 100"))
    refused_repeatedly(d, ts)


def client_cert(w, ca):
    def ssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=w, check=True, capture_output=True)

    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=phxd client")
    ssl("x509", "-req", "-in", "client.csr", "-CA", ca, "-CAkey", os.path.join(w, "ca.key"),
        "-CAcreateserial", "-out", "client.pem", "-days", "1")
    return os.path.join(w, "client.pem"), os.path.join(w, "client.key")


@test
def wss_client_certificate(w):
    ca, cert, key = make_certs(w, "DNS:localhost")
    ts = TestServer(w, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca)
    ccert, ckey = client_cert(w, ca)
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:mtls",
                         extra=f"ca_file = {ca}\nclient_cert = {ccert}\nclient_key = {ckey}"))
    d.wait_joined("rooms:mtls")
    # without one, the server refuses the handshake
    w2 = os.path.join(w, "nocert")
    os.mkdir(w2)
    d2 = Daemon(w2, config(f"wss://localhost:{ts.port}/socket", "rooms:mtls",
                           extra=f"ca_file = {ca}\nreconnect_after_ms = 100"))
    # (the controls need a client certificate too: not asked here)
    refused_repeatedly(d2, ts, open_elsewhere=None)


@test
def wss_without_verification_when_asked(w):
    ts, ca = tls_server(w, san="DNS:elsewhere.example")
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:tls",
                         extra="tls_verify = no"))
    d.wait_joined("rooms:tls")


@test
def wss_to_ip_addresses_checks_the_certificates_ip_entries(w):
    for host, san in (("127.0.0.1", "IP:127.0.0.1"), ("::1", "IP:::1")):
        sub = os.path.join(w, host.replace(":", "_"))
        os.mkdir(sub)
        ca, cert, key = make_certs(sub, san)
        ts = TestServer(sub, "--host", host, "--tls-cert", cert, "--tls-key", key)
        d = Daemon(sub, config(f"wss://{ts.hostport}/socket?headers=Host", "rooms:ip",
                               extra=f"ca_file = {ca}"))
        d.wait_joined("rooms:ip")
        r = d.client().ok("push", topic="rooms:ip", event="whoami", **{"await": True})
        assert r["response"]["headers"]["Host"] == ts.hostport, r
    # a certificate for another address is refused
    sub = os.path.join(w, "other")
    os.mkdir(sub)
    ca, cert, key = make_certs(sub, "IP:127.0.0.2")
    ts = TestServer(sub, "--tls-cert", cert, "--tls-key", key)
    d = Daemon(sub, config(f"wss://127.0.0.1:{ts.port}/socket", "rooms:ip",
                           extra=f"ca_file = {ca}\nreconnect_after_ms = 100"))
    st = refused_repeatedly(d, ts)
    d.wait_log("does not name the address 127.0.0.1")
    assert st["last_error"] == "TLS: the certificate does not name 127.0.0.1", st


@test
def wss_missing_ca_file_is_named(w):
    ts, ca = tls_server(w)
    missing = os.path.join(w, "gone.pem")
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:tls",
                         extra=f"ca_file = {missing}\nreconnect_after_ms = 100"))
    refused_repeatedly(d, ts)
    d.wait_log(f"cannot set up TLS: ca_file {missing}: No such file or directory")


@test
def reload_after_rotating_the_ca_and_certificate_reconnects_with_them(w):
    ca, cert, key = make_certs(w, "DNS:localhost")
    ts = TestServer(w, "--tls-cert", cert, "--tls-key", key)
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:rot",
                         extra=f"ca_file = {ca}\nreconnect_after_ms = 100"))
    d.wait_joined("rooms:rot")
    # a new CA and server certificate at the same paths; the server restarts
    ts.stop()
    make_certs(w, "DNS:localhost")
    ts.restart()
    before = d.status()[0]["attempts"]
    wait_until(lambda: d.status()[0]["attempts"] >= before + 3, what="retries with the old CA")
    assert d.status()[0]["state"] != "open"
    r = d.client().ok("reload")
    assert r["reloads"] == 1
    d.wait_joined("rooms:rot")
    # the old files' context is not kept for the daemon's life
    d.wait_log(f"tls: a context for files that changed since is let go ({ca}|||)")


@test
def a_key_that_does_not_match_its_certificate_is_named(w):
    ca, cert, key = make_certs(w, "DNS:localhost")
    ts = TestServer(w, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca)
    ccert, ckey = client_cert(w, ca)
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:mtls",
                         extra=f"ca_file = {ca}\nclient_cert = {ccert}\nclient_key = {key}\n"
                               "reconnect_after_ms = 100"))
    refused_repeatedly(d, ts, open_elsewhere=None)
    d.wait_log(f"cannot set up TLS: client_key {key}: ")



@test
def stopping_while_tls_contexts_are_being_built_exits_cleanly(w):
    """TLS contexts are built on threads of their own, and a stop may come
    while one runs (a failing build retried every millisecond here): phxd
    still exits 0, whatever OpenSSL's thread is doing."""
    ca, cert, key = make_certs(w, "DNS:localhost")
    ccert, _ = client_cert(w, ca)
    conf = config("wss://127.0.0.1:1/socket", "rooms:a",
                  extra=f"client_cert = {ccert}\nclient_key = {key}\nreconnect_after_ms = 1")
    for i in range(15):
        sub = os.path.join(w, f"run{i}")
        os.mkdir(sub)
        d = Daemon(sub, conf)
        d.wait_log("cannot set up TLS: client_key")
        time.sleep(0.01 * (i % 5))
        assert d.stop() == 0, f"run {i}: phxd did not exit cleanly"


@test
def tls_verify_no_is_warned_about(w):
    ts, ca = tls_server(w, san="DNS:elsewhere.example")
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:tls",
                         extra="tls_verify = no"))
    d.wait_joined("rooms:tls")
    d.wait_log("warning: demo: tls_verify = no: the server's certificate is not checked")


@test
def a_wss_stream_arrives_in_order_and_its_ends_are_seen(w):
    """An open wss socket is read with OpenSSL's read-ahead, record after
    record until it wants more, and moderated as a plain one: a stream
    arrives whole and in order, small messages or large; the server's
    clean close (close frame, close_notify) and its loss (killed, no
    close_notify) are both seen."""
    ts, ca = tls_server(w)
    fast = f"ca_file = {ca}\nreconnect_after_ms = 50 100\nrejoin_after_ms = 100"
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "load:tls", "rooms:tls",
                         extra=fast, head=STREAM_HEAD), log_level="info")
    d.wait_joined("load:tls", "rooms:tls")
    c = d.client()
    for _ in range(100):
        assert c.ok("push", topic="load:tls", event="count", **{"await": True})["response"]
    assert read_pauses(d) == 0
    stream_in_order(d, c, "load:tls", 30000)
    # messages larger than a read (64 KiB): reads end with records left
    # in OpenSSL that the socket no longer shows. Whether a read drains
    # the socket (and so pauses) depends on whether phxd decrypts faster
    # than the server encrypts, which a loaded machine decides
    stream_in_order(d, c, "load:tls", 200, size=150000, paused=False)
    c.ok("push", topic="rooms:tls", event="disconnect_socket")
    wait_until(lambda: d.status()[0]["connects"] == 2 and d.topic_states()["load:tls"] == "joined",
               what="reconnected after the server's close")
    c.ok("push", topic="load:tls", event="flood", payload={"n": 10 ** 7, "size": 200})
    paused = read_pauses(d)
    wait_until(lambda: read_pauses(d) > paused, what="the second stream paused")
    ts.stop()
    wait_until(lambda: d.status()[0]["state"] in ("waiting", "connecting"),
               what="phxd sees the loss in the middle of a stream")
    ts.restart()
    d.wait_joined("load:tls")


run()
