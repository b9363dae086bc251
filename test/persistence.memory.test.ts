import { MemoryPersistence } from "../src/persistence/memory.ts";
import { runPersistenceSuite } from "./conformance/persistence.ts";

runPersistenceSuite("memory", () => Promise.resolve(new MemoryPersistence()), {
  countKeys: (p) => Promise.resolve((p as MemoryPersistence).keyCount()),
});
