/** What one benchmark run leaves behind (also the shape of the JSON output). */
import { type Measured } from "./scenarios.ts";

export interface RunRecord extends Measured {
  scenario: string;
  broker: string;
  /** 1-based repeat number. */
  repeat: number;
  startedAt: string;
  seconds: number;
  values?: number[];
  brokerPid?: number;
  /** Other processes used more than the threshold of CPU while this run was measured. */
  busy?: boolean;
  notes: string[];
  error?: string;
  skipped?: string;
  detail?: unknown;
}
