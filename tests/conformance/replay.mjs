// SPDX-License-Identifier: MIT
// Replays every recorded Phoenix 1.7.24 transcript (../shared/fixtures/
// phoenix-wire) against phxd-testserver: the same client frames must bring
// back the same server frames, byte for byte, and the same closes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startServer, RawClient, sleep, FIXTURES } from "./lib.mjs";

const haveFixtures = FIXTURES && fs.existsSync(FIXTURES);
const files = haveFixtures
  ? fs.readdirSync(FIXTURES).filter((f) => f.endsWith(".jsonl")).sort()
  : [];

// The URL each recording used (see the fixtures README).
const QUERY = {
  "connect_reject.jsonl": "?vsn=2.0.0&reject=true",
  "connect_bad_vsn.jsonl": "?vsn=3.0.0",
  "connect_no_vsn_v1.jsonl": "",
};

let server, idleServer;
before(async () => {
  if (!haveFixtures) return;
  server = await startServer();
  // idle_timeout.jsonl waited 60 s for Bandit; the same rule, sooner.
  idleServer = await startServer(["--idle-timeout", "800"]);
});
after(async () => {
  if (server) assert.equal(await server.stop(), 0);
  if (idleServer) assert.equal(await idleServer.stop(), 0);
});

function load(file) {
  return fs.readFileSync(path.join(FIXTURES, file), "utf8")
    .split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

// Splits a transcript into steps: a client frame and the server frames that
// answered it before the next client frame.
function steps(lines) {
  const out = [{ send: null, expect: [] }];
  for (const l of lines) {
    if (l.dir === "c2s") out.push({ send: l, expect: [] });
    else out[out.length - 1].expect.push(l);
  }
  return out.filter((s) => s.send || s.expect.length);
}

function seen(client, from) {
  const got = client.frames.slice(from).map((f) =>
    f.type === "binary" ? { type: "binary", hex: f.hex } : { type: "text", data: f.data });
  if (client.closed && client.closed.code) got.push({ type: "close", code: client.closed.code });
  return got;
}

function wanted(expect) {
  return expect.map((l) =>
    l.type === "binary" ? { type: "binary", hex: l.hex }
    : l.type === "close" ? { type: "close", code: l.code }
    : { type: "text", data: l.data });
}

for (const file of files) {
  test(`replay ${file}`, async () => {
    const lines = load(file);
    const srv = file === "idle_timeout.jsonl" ? idleServer : server;
    const query = file in QUERY ? QUERY[file] : "?vsn=2.0.0";

    if (lines[0].type === "http") {
      const client = new RawClient(srv.url + query);
      await client.until((_f, closed) => closed !== null, 3000);
      assert.equal(client.unexpected, lines[1].code, `${file}: HTTP status`);
      return;
    }
    const client = new RawClient(srv.url + query);
    await client.opened();
    let from = 0;
    try {
      for (const step of steps(lines)) {
        if (step.send) client.send(step.send);
        const want = wanted(step.expect);
        const idleWait = file === "idle_timeout.jsonl" && want.some((w) => w.type === "close");
        await client.until((frames, closed) =>
          frames.length - from + (closed && closed.code ? 1 : 0) >= want.length,
          idleWait ? 5000 : 3000);
        await sleep(want.length ? 40 : 120); // anything extra would show up here
        assert.deepEqual(seen(client, from), want, `${file}: after ${JSON.stringify(step.send)}`);
        from = client.frames.length;
      }
    } finally {
      client.close();
    }
  });
}

test("fixtures are present", () => {
  // they ship with the source: missing ones are a failure, not a skip
  assert.ok(haveFixtures, "PHXD_FIXTURES not found");
  assert.equal(files.length, 36, `${files.length} recordings found`);
});
