/** Colibri's version (package.json's), for --version, $SYS/broker/version and /metrics. */
export const VERSION = "0.1.0";
