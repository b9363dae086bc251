/** Runs `task(0..n-1)` with at most `concurrency` in flight; rejects on the first failure. */
export async function inPool(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(n, Math.max(1, concurrency)) }, worker));
}
