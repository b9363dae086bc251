/**
 * The broker's gauges at one moment, computed in one pass over the sessions this node holds:
 * what $SYS (sys.ts) and /metrics (metrics.ts) publish besides the counters in Stats. Called
 * every --sys-interval and on every scrape, never on the message path.
 */
import type { Session } from "../session/session.ts";

export interface SessionGauges {
  /** Sessions with a connected client. */
  connected: number;
  /** Sessions kept without a client (persistent, waiting for it or for their expiry). */
  disconnected: number;
  /** Subscriptions of every session (a client's filter counts once). */
  subscriptions: number;
  /** QoS 1/2 messages queued behind the sessions' inflight windows, and the longest queue. */
  queued: number;
  queueMax: number;
  /** QoS 1/2 messages sent and not acknowledged yet. */
  inflight: number;
}

export function sessionGauges(sessions: Iterable<Session>): SessionGauges {
  const g: SessionGauges = { connected: 0, disconnected: 0, subscriptions: 0, queued: 0, queueMax: 0, inflight: 0 };
  for (const s of sessions) {
    if (s.client !== undefined) g.connected++;
    else g.disconnected++;
    g.subscriptions += s.subscriptionCount;
    const q = s.queue.length;
    g.queued += q;
    if (q > g.queueMax) g.queueMax = q;
    g.inflight += s.inflightCount;
  }
  return g;
}
