/** CPU seconds used by this (generator) process. */
import process from "node:process";
import { cpuSeconds, systemBusySeconds } from "./procfs.ts";

export function generatorCpu(): number {
  return cpuSeconds(process.pid);
}

/** Busy CPU seconds of the whole machine, to spot other load during a measurement. */
export function machineBusy(): number {
  return systemBusySeconds();
}
