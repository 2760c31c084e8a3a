import { describe, expect, it } from "vitest";
import { type BatchSink, LineBatcher } from "../../src/log/line-batcher.js";
import { workerExecArgv } from "../../src/workers/worker-link.js";

/** A sink that keeps every write, as sonic-boom would hand them to write(2). */
function recordingSink(): BatchSink & { writes: string[]; syncFlushes: number } {
  const sink = {
    writes: [] as string[],
    syncFlushes: 0,
    write(text: string): boolean {
      sink.writes.push(text);
      return true;
    },
    flush(callback: (error?: Error | null) => void): void {
      callback(null);
    },
    flushSync(): void {
      sink.syncFlushes += 1;
    },
  };
  return sink;
}

const line = (i: number, size: number): string => `{"n":${i},"pad":"${"é".repeat(size)}"}\n`;

describe("LineBatcher", () => {
  it("hands on whole lines, in order, in batches of at most maxBytes (counted in bytes, not characters)", () => {
    const sink = recordingSink();
    const batcher = new LineBatcher(sink, { batchBytes: 3072, maxBytes: 4096, flushMs: 60_000 });
    const lines = Array.from({ length: 300 }, (_, i) => line(i, (i * 37) % 700));
    for (const l of lines) batcher.write(l);
    batcher.flushSync();
    expect(sink.writes.join("")).toBe(lines.join(""));
    for (const w of sink.writes) {
      expect(Buffer.byteLength(w)).toBeLessThanOrEqual(4096);
      expect(w.endsWith("\n")).toBe(true);
    }
    // Batched: far fewer writes than lines.
    expect(sink.writes.length).toBeLessThan(lines.length / 3);
    expect(sink.syncFlushes).toBe(1);
  });

  it("writes a lone line once the flush interval passes", async () => {
    const sink = recordingSink();
    const batcher = new LineBatcher(sink, { batchBytes: 3072, maxBytes: 4096, flushMs: 20 });
    batcher.write(line(1, 10));
    expect(sink.writes).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(sink.writes).toEqual([line(1, 10)]);
  });

  it("hands on what it holds before the sink's flush", async () => {
    const sink = recordingSink();
    const batcher = new LineBatcher(sink, { batchBytes: 3072, maxBytes: 4096, flushMs: 60_000 });
    batcher.write(line(1, 10));
    await new Promise<void>((resolve) => batcher.flush(() => resolve()));
    expect(sink.writes).toEqual([line(1, 10)]);
  });
});

describe("workerExecArgv", () => {
  it("adds the young-generation cap unless the operator chose one", () => {
    expect(workerExecArgv(["--enable-source-maps"], undefined)).toEqual(["--enable-source-maps", "--max-semi-space-size=2"]);
    expect(workerExecArgv(["--max-semi-space-size=8"], undefined)).toEqual(["--max-semi-space-size=8"]);
    expect(workerExecArgv([], "--max_semi_space_size=16 --trace-warnings")).toEqual([]);
  });
});
