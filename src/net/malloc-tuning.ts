import type { Libc } from "./libc.js";

// glibc mallopt parameters (malloc.h).
const M_TRIM_THRESHOLD = -1;
const M_TOP_PAD = -2;
const M_MMAP_THRESHOLD = -3;
const M_ARENA_MAX = -8;

/**
 * One malloc arena for the whole process. glibc gives threads that allocate
 * at once arenas of their own (V8's GC and compiler threads, libuv's pool),
 * and each arena keeps the free heap that the trim threshold below lets it
 * keep. Opening 9,900 idle sessions through two workers cost 5.9 KiB of RSS
 * per session with glibc's default and 4.5 KiB with one arena (two: 5.1).
 * Nearly every allocation is made by the event loop's thread anyway, and
 * glibc's per-thread cache spares the rest most trips to the arena's lock.
 * Worker processes get it as MALLOC_ARENA_MAX from their first allocation
 * (the supervisor sets it); a single process sets it here, for the threads
 * that have not allocated yet.
 */
export const MALLOC_ARENAS = 1;

/**
 * Keeps glibc from handing freed heap back to the kernel after every read.
 * Node allocates a fresh 64 KiB buffer for each socket read; with glibc's
 * defaults the top of the heap is trimmed and regrown constantly, and the
 * benchmark measured 100-150 page faults per MB forwarded, 93 % of them in
 * the kernel's copy into new read buffers. Holding up to 64 MiB of free heap
 * (fixing the mmap threshold at 1 MiB, which also stops glibc from moving it)
 * removes them. Returns whether glibc took the settings (musl has no mallopt).
 */
export function tuneMallocForForwarding(libc: Libc): boolean {
  // The operator's own MALLOC_ARENA_MAX wins (glibc has read it already).
  if (process.env.MALLOC_ARENA_MAX === undefined) libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS);
  const trim = libc.mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  const pad = libc.mallopt(M_TOP_PAD, 16 * 1024 * 1024);
  const mmap = libc.mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  return trim && pad && mmap;
}
