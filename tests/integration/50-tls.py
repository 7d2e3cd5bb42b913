"""wss:// with certificate verification: a CA file, the system store, a
wrong host name, and tls_verify = no. Certificates are made here with
openssl, valid for a day."""
import os
import subprocess
import time

from harness import Daemon, TestServer, config, run, test, wait_until


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
                         extra="reconnect_after_ms = 200"))
    time.sleep(1.0)
    st = d.status()[0]
    assert st["connects"] == 0 and st["state"] in ("waiting", "connecting"), st
    assert st["last_error"], st
    assert ts.control("stats")["connections"] == 0


@test
def wss_wrong_host_name_is_refused(w):
    ts, ca = tls_server(w, san="DNS:elsewhere.example")
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:tls",
                         extra=f"ca_file = {ca}\nreconnect_after_ms = 200"))
    time.sleep(1.0)
    st = d.status()[0]
    assert st["connects"] == 0, st


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
                           extra=f"ca_file = {ca}\nreconnect_after_ms = 200"))
    time.sleep(1.0)
    assert d2.status()[0]["connects"] == 0, d2.status()


@test
def wss_without_verification_when_asked(w):
    ts, ca = tls_server(w, san="DNS:elsewhere.example")
    d = Daemon(w, config(f"wss://localhost:{ts.port}/socket", "rooms:tls",
                         extra="tls_verify = no"))
    d.wait_joined("rooms:tls")


run()
