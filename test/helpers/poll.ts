// Waiting on an observable that takes an async probe to read (an HTTP
// endpoint, a Prometheus query): probe, and probe again shortly, until it
// answers, never a fixed sleep.

/**
 * Calls `probe` every `everyMs` until it resolves with a value other than
 * undefined, and resolves with that value; rejects after `timeoutMs` naming
 * `what` and the last answer or error, so a failure says what was seen.
 */
export async function poll<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
      last = "no answer yet";
    } catch (error) {
      last = error instanceof Error ? error.message : error;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${String(last)}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
