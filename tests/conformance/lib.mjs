// SPDX-License-Identifier: MIT
// Helpers shared by the conformance tests: start phxd-testserver on a free
// loopback port, drive its fault controls, and speak raw websocket frames.
import { spawn } from "node:child_process";
import http from "node:http";
import { once } from "node:events";
import WebSocket from "ws";

export const TESTSERVER = process.env.PHXD_TESTSERVER;
export const FIXTURES = process.env.PHXD_FIXTURES;

// Starts the server; resolves with { port, url, proc, stop() }.
export async function startServer(args = []) {
  if (!TESTSERVER) throw new Error("PHXD_TESTSERVER is not set");
  // PHXD_TS_EMULATE=1.8.12: the same tests against that release's quirks
  const emulate = process.env.PHXD_TS_EMULATE && !args.includes("--emulate")
    ? ["--emulate", process.env.PHXD_TS_EMULATE] : [];
  const proc = spawn(TESTSERVER, ["--port", "0", ...emulate, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("test server did not start")), 10000);
    proc.stdout.on("data", (chunk) => {
      out += chunk;
      const m = out.match(/listening on ws:\/\/[^:]+:(\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`test server exited with ${code}`));
    });
  });
  const server = {
    port,
    proc,
    url: `ws://127.0.0.1:${port}/socket/websocket`,
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill("SIGTERM");
      const [code] = await once(proc, "exit");
      return code;
    },
  };
  return server;
}

// GET /control/<cmd>?args; resolves with { status, body }.
export function control(server, cmd, args = {}) {
  const qs = new URLSearchParams(args).toString();
  const path = `/control/${cmd}${qs ? "?" + qs : ""}`;
  return httpGet(server.port, path);
}

export function httpGet(port, path) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let data = "";
      res.on("data", (c) => (data += c));
      res.on("end", () => {
        let body = null;
        try {
          body = JSON.parse(data);
        } catch {
          body = data;
        }
        resolve({ status: res.statusCode, body, raw: data });
      });
    });
    req.on("error", reject);
  });
}

// A raw websocket client that records every frame it receives.
export class RawClient {
  constructor(url, protocols) {
    this.frames = [];
    this.waiters = [];
    this.closed = null;
    this.ws = new WebSocket(url, protocols);
    this.ws.binaryType = "nodebuffer";
    this.unexpected = null;
    this.ws.on("unexpected-response", (_req, res) => {
      this.unexpected = res.statusCode;
      this.closed = { code: 0, http: res.statusCode };
      this.notify();
    });
    this.ws.on("message", (data, isBinary) => {
      this.frames.push(isBinary ? { type: "binary", hex: data.toString("hex") }
                                : { type: "text", data: data.toString("utf8") });
      this.notify();
    });
    this.ws.on("close", (code) => {
      this.closed = { code };
      this.notify();
    });
    this.ws.on("error", () => {});
  }
  notify() {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }
  opened() {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) return resolve();
      this.ws.once("open", resolve);
      this.ws.once("close", () => reject(new Error("closed before open")));
      this.ws.once("unexpected-response", (_q, res) =>
        reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }
  send(frame) {
    if (frame.type === "binary") this.ws.send(Buffer.from(frame.hex, "hex"), { binary: true });
    else this.ws.send(frame.data);
  }
  // Waits until `pred(frames, closed)` holds, or the timeout passes.
  until(pred, ms = 3000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(
        `timed out; frames so far: ${JSON.stringify(this.frames)} closed: ${JSON.stringify(this.closed)}`)), ms);
      const check = () => {
        if (pred(this.frames, this.closed)) {
          clearTimeout(timer);
          resolve();
        } else {
          this.waiters.push(check);
        }
      };
      check();
    });
  }
  // Collects frames until `quietMs` pass without one (as the recordings did).
  async settle(quietMs = 150) {
    let last = -1;
    while (last !== this.frames.length) {
      last = this.frames.length;
      await sleep(quietMs);
    }
  }
  close() {
    try { this.ws.terminate(); } catch { /* already gone */ }
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
