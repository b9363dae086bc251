/**
 * Opens many idle MQTT connections (CONNECT with keep-alive 0, clean session) from this one
 * process, a bounded number at a time, and times how long until every CONNACK is in.
 */
import { type Conn, type Connector } from "./transport.ts";
import { encodeConnect } from "./mqtt-encode.ts";
import { inPool } from "./pool.ts";

export interface IdleConnections {
  conns: Conn[];
  /** Wall time from the first connect() to the last CONNACK, in seconds. */
  seconds: number;
  /** Connections the broker closed after accepting them. */
  dropped(): number;
  closeAll(): void;
}

export async function openIdle(
  connect: Connector,
  host: string,
  port: number,
  n: number,
  concurrency: number,
  label: string,
): Promise<IdleConnections> {
  const conns: Conn[] = [];
  let dropped = 0;
  let closing = false;
  const t0 = performance.now();
  try {
    await inPool(n, concurrency, async (i) => {
      let got = 0;
      let first = -1;
      let rc = -1;
      let open = true;
      let settle: ((e?: Error) => void) | null = null;
      const acked = new Promise<void>((resolve, reject) => {
        settle = (e) => (e === undefined ? resolve() : reject(e));
      });
      const conn = await connect(host, port, {
        data(chunk) {
          for (let k = 0; k < chunk.length && got < 4; k++, got++) {
            if (got === 0) first = chunk[k];
            if (got === 3) rc = chunk[k];
          }
          if (got >= 4 && settle !== null) {
            const s = settle;
            settle = null;
            s(first === 0x20 && rc === 0 ? undefined : new Error(`connection ${i}: bad CONNACK (${first}, rc ${rc})`));
          }
        },
        close() {
          if (!open) return;
          open = false;
          if (settle !== null) settle(new Error(`connection ${i} closed before CONNACK`));
          else if (!closing) dropped++;
        },
      });
      conns.push(conn);
      conn.write(encodeConnect({ clientId: `${label}-${i}`, clean: true, keepAlive: 0 }));
      await acked;
    });
  } catch (e) {
    closing = true;
    for (const c of conns) c.destroy();
    throw e;
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    conns,
    seconds,
    dropped: () => dropped,
    closeAll() {
      closing = true;
      for (const c of conns) c.destroy();
    },
  };
}
