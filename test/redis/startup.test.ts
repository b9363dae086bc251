/** Redis settings from flags and environment; an unreachable Redis at start is a clear error. */
import process from "node:process";
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnProcess } from "../helpers/system.ts";
import { freePort } from "../helpers/redis-server.ts";
import { isBun } from "../helpers/broker.ts";
import type { BrokerProcess } from "../helpers/broker-process.ts";
import { connectV4, RawClient } from "../helpers/raw-client.ts";

const cmd = isBun ? "node_modules/.bin/bun" : "node_modules/.bin/deno";
const pre = isBun ? ["run", "src/main.ts"] : ["run", "-A", "src/main.ts"];

describe("redis persistence: start-up", () => {
  let b: BrokerProcess | undefined;
  after(async () => {
    RawClient.destroyAll();
    await b?.stop();
  });

  it("exits with a message naming the URL when Redis is unreachable", async () => {
    const dead = await freePort();
    const url = `redis://127.0.0.1:${dead}`;
    const p = spawnProcess(cmd, [...pre, "--port", "0", "--persistence", "redis", "--redis-url", url]);
    const exit = await p.exited;
    assert.notEqual(exit.code, 0);
    const out = p.lines.join("\n");
    assert.match(out, new RegExp(`127\\.0\\.0\\.1:${dead}`));
    assert.match(out, /--redis-url/);
  });

  it("refuses a database the URL names that the server does not have, instead of using database 0", async () => {
    const p = spawnProcess(cmd, [...pre, "--port", "0", "--persistence", "redis", "--redis-url", "redis://127.0.0.1:6379/99"]);
    const exit = await p.exited;
    assert.notEqual(exit.code, 0);
    const out = p.lines.join("\n");
    assert.match(out, /no database 99/);
    assert.match(out, /--redis-url/);
    assert.doesNotMatch(out, /colibri listening/);
  });

  it("takes persistence settings from the environment", async () => {
    const prefix = `colibri-test:env:${Math.random().toString(36).slice(2)}:`;
    const port = await freePort();
    const p = spawnProcess(cmd, [...pre, "--host", "127.0.0.1", "--port", String(port)], {
      env: { ...process.env, COLIBRI_PERSISTENCE: "redis", COLIBRI_REDIS_URL: "redis://127.0.0.1:6379", COLIBRI_REDIS_PREFIX: prefix },
    });
    const line = await p.waitForLine(/colibri listening/, 20_000);
    assert.match(line.input ?? line[0], new RegExp(`persistence="redis redis://127.0.0.1:6379 prefix=${prefix}`));
    const { client, connack } = await connectV4(port, "env-client");
    assert.equal(connack.returnCode, 0);
    client.destroy();
    await p.kill("SIGTERM");
  });
});
