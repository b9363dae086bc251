/**
 * A migration as users do it: the same mosquitto_passwd file and the same Mosquitto ACL file
 * (users, patterns with %c and %u, an anonymous section, deny rules) given to a private
 * Mosquitto 2.0 and to Colibri, the same clients (MQTT.js, 3.1.1 and 5.0) publishing the same
 * matrix of topics. Every subscriber must receive exactly the same messages from both, and every
 * publish must be refused (MQTT 5 PUBACK 0x87) by both or by neither.
 *
 * Where Colibri differs on purpose (README "Authentication and ACL"): it refuses a subscription
 * under which nothing is readable (SUBACK 0x87 / 0x80; Mosquitto grants it and delivers nothing),
 * checked at the end.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fs from "node:fs";
import path from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { mosquittoPasswd, startSecureBroker, type SecureBroker } from "../helpers/auth.ts";
import { makeTempDir, removeDir, startMosquitto, type MosquittoBroker } from "../helpers/system.ts";

const SLOW = { timeout: 60_000 };

const ACL = `# ACL of a small fleet, as it ran on Mosquitto
# anonymous clients: the public board only
topic read public/#

user admin
topic readwrite #

user dashboard
topic read sensors/#
topic deny sensors/lab/secret
topic read devices/+/status
topic write commands/#

user device
topic write sensors/+/telemetry

# every client: its own device tree, its user's inbox, a sync topic for this test
pattern readwrite devices/%c/#
pattern deny devices/%c/firmware/secret
pattern read inbox/%u
pattern write sensors/%u/telemetry
pattern read sync/%c
`;

const USERS: Record<string, string> = { admin: "adminpw", dashboard: "dashpw", device: "devpw" };

interface Who {
  id: string;
  username?: string;
  v: 4 | 5;
}

const SUBSCRIBERS: Array<Who & { filters: string[] }> = [
  { id: "anon-sub", v: 4, filters: ["#"] },
  { id: "admin-sub", username: "admin", v: 5, filters: ["#"] },
  { id: "dash-sub", username: "dashboard", v: 4, filters: ["#", "sensors/+/telemetry"] },
  { id: "dev42", username: "device", v: 5, filters: ["devices/dev42/#", "inbox/+", "sensors/#"] },
];

const PUBLISHERS: Who[] = [
  { id: "admin-pub", username: "admin", v: 5 },
  { id: "dev42-pub", username: "device", v: 5 },
  { id: "dash-pub", username: "dashboard", v: 5 },
  { id: "anon-pub", v: 5 },
];

const TOPICS = [
  "public/news", "sensors/room1/telemetry", "sensors/lab/secret", "sensors/device/telemetry",
  "devices/dev42/status", "devices/dev42/firmware/secret", "devices/dev42-pub/status", "devices/dev7/status",
  "commands/reboot", "inbox/device", "inbox/admin", "other/x", "$SYS/broker/x",
];

const live = new Set<MqttClient>();

function open(port: number, w: Who): Promise<MqttClient> {
  const opts: IClientOptions = {
    clientId: w.id, protocolVersion: w.v, reconnectPeriod: 0, connectTimeout: 5000, clean: true,
    ...(w.username ? { username: w.username, password: USERS[w.username] } : {}),
  };
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, opts);
  live.add(c);
  return new Promise((resolve, reject) => {
    c.once("connect", () => resolve(c));
    c.once("error", reject);
  });
}

interface Outcome {
  /** subscriber -> sorted "topic <- payload" lines */
  received: Map<string, string[]>;
  /** "publisher topic" of the publishes refused with 0x87 (MQTT 5 publishers) */
  refused: string[];
  /** subscriber -> SUBACK codes */
  subacks: Map<string, number[]>;
}

async function scenario(port: number): Promise<Outcome> {
  const received = new Map<string, string[]>();
  const subacks = new Map<string, number[]>();
  const synced = new Map<string, Promise<void>>();
  const subs: MqttClient[] = [];
  for (const s of SUBSCRIBERS) {
    const c = await open(port, s);
    subs.push(c);
    const got: string[] = [];
    received.set(s.id, got);
    let done!: () => void;
    synced.set(s.id, new Promise<void>((r) => (done = r)));
    c.on("message", (topic, payload) => {
      // a '#' subscriber also sees the other subscribers' sync messages, some after its own
      // (which ends its recording): keep every sync message out of the comparison
      if (topic === `sync/${s.id}`) done();
      else if (!topic.startsWith("sync/")) got.push(`${topic} <- ${Buffer.from(payload).toString()}`);
    });
    // the SUBACK itself (MQTT.js reports a refused filter as an error, with the packet)
    const granted = await new Promise<number[]>((resolve) =>
      c.subscribe(Object.fromEntries([...s.filters, `sync/${s.id}`].map((t) => [t, { qos: 1 as const }])), (e, g) =>
        resolve(e ? (e as unknown as { packet: { granted: number[] } }).packet.granted : g!.map((x) => x.qos)))
    );
    subacks.set(s.id, granted);
  }
  const refused: string[] = [];
  for (const p of PUBLISHERS) {
    const c = await open(port, p);
    for (const topic of TOPICS) {
      // MQTT.js rejects a PUBACK with a failure reason code
      const code = await c.publishAsync(topic, `${p.id}`, { qos: 1 }).then(() => 0, (e) => (e as { code?: number }).code);
      if (code === 0x87) refused.push(`${p.id} ${topic}`);
      else assert.equal(code, 0, `${p.id} publishing to ${topic}`);
    }
    c.end(true);
  }
  // admin may write everywhere: each subscriber's sync topic closes its stream (QoS 1, in order)
  const admin = await open(port, { id: "admin-sync", username: "admin", v: 5 });
  for (const s of SUBSCRIBERS) await admin.publishAsync(`sync/${s.id}`, "sync", { qos: 1 });
  await Promise.all(SUBSCRIBERS.map((s) => Promise.race([
    synced.get(s.id)!,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no sync message for ${s.id} on port ${port}`)), 5000)),
  ])));
  admin.end(true);
  for (const c of subs) c.end(true);
  for (const v of received.values()) v.sort();
  return { received, refused: refused.sort(), subacks };
}

describe("ACL migration: the same files on Mosquitto 2.0 and on Colibri", SLOW, () => {
  let dir = "";
  let mosq: MosquittoBroker;
  let colibri: SecureBroker;
  let theirs: Outcome;
  let ours: Outcome;

  before(async () => {
    dir = makeTempDir();
    const pw = path.join(dir, "passwd");
    for (const [u, p] of Object.entries(USERS)) await mosquittoPasswd(pw, u, p);
    const aclFile = path.join(dir, "acl");
    fs.writeFileSync(aclFile, ACL);
    // Mosquitto started as root reads its files as user "mosquitto"
    fs.chmodSync(dir, 0o755);
    for (const f of [pw, aclFile]) fs.chmodSync(f, 0o644);
    mosq = await startMosquitto({ extraConfig: [`password_file ${pw}`, `acl_file ${aclFile}`] });
    colibri = await startSecureBroker({ users: USERS, acl: ACL, config: { logLevel: "warn" } });
    theirs = await scenario(mosq.port);
    ours = await scenario(colibri.port);
  });

  after(async () => {
    for (const c of live) c.end(true);
    await mosq?.stop();
    await colibri?.close();
    removeDir(dir);
  });

  it("every subscriber receives exactly what it receives from Mosquitto", () => {
    for (const s of SUBSCRIBERS) {
      assert.deepEqual(ours.received.get(s.id), theirs.received.get(s.id), `messages received by ${s.id}`);
    }
    // and the file does something: not everything, not nothing
    const anon = ours.received.get("anon-sub")!;
    assert.deepEqual(anon, ["public/news <- admin-pub"]);
    const dev = ours.received.get("dev42")!;
    assert.ok(dev.includes("devices/dev42/status <- admin-pub") && !dev.some((m) => m.startsWith("devices/dev42/firmware/secret")));
    assert.ok(ours.received.get("dash-sub")!.includes("sensors/device/telemetry <- dev42-pub"));
  });

  it("the same publishes are refused (MQTT 5 PUBACK 0x87), $SYS included", () => {
    assert.deepEqual(ours.refused, theirs.refused);
    assert.ok(ours.refused.includes("anon-pub public/news") && ours.refused.includes("admin-pub $SYS/broker/x"));
    assert.ok(!ours.refused.includes("admin-pub other/x"));
  });

  it("difference on purpose: a filter under which nothing is readable is refused (Mosquitto grants it)", () => {
    // dev42's `sensors/#` overlaps nothing it may read (write-only rules): 0x87
    assert.deepEqual(theirs.subacks.get("dev42"), [1, 1, 1, 1]);
    assert.deepEqual(ours.subacks.get("dev42"), [1, 1, 0x87, 1]);
    for (const s of SUBSCRIBERS.filter((s) => s.id !== "dev42")) assert.deepEqual(ours.subacks.get(s.id), theirs.subacks.get(s.id));
  });
});
