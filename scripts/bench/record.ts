/** What one benchmark run leaves behind (also the shape of the JSON output). */
import { type Verification } from "./scenarios.ts";

export interface RunRecord {
  scenario: string;
  broker: string;
  /** 1-based repeat number. */
  repeat: number;
  startedAt: string;
  seconds: number;
  values?: number[];
  verification?: Verification;
  brokerCpuPct?: number;
  genCpuPct?: number;
  /** CPU used by other processes on the machine during the measured window. */
  otherCpuPct?: number;
  /** CPU of helper processes (Redis) during the measured window. */
  helperCpuPct?: number;
  brokerRssKb?: number;
  brokerPid?: number;
  /** Other processes used more than the threshold of CPU while this run was measured. */
  busy?: boolean;
  notes: string[];
  error?: string;
  skipped?: string;
  detail?: unknown;
}
