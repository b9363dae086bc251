/**
 * Liveness and readiness. Alive: the process answers. Ready to take clients: started (the
 * stored sessions are restored and the listeners open), not draining or stopping, and, when
 * the state lives in a store reached over the network (Redis), connected to it: a node cut off
 * from Redis serves its local traffic but should not be given new clients by a load balancer.
 */
export type Phase = "starting" | "running" | "draining" | "stopping";

export interface Readiness {
  ready: boolean;
  /** Why not ready ("" when ready). */
  reason: string;
}

export class Health {
  phase: Phase = "starting";
  constructor(private readonly store?: { readonly connected?: boolean }) {}

  readiness(): Readiness {
    if (this.phase !== "running") return { ready: false, reason: this.phase };
    if (this.store?.connected === false) return { ready: false, reason: "store unreachable" };
    return { ready: true, reason: "" };
  }
}
