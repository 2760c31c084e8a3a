import type { Libc } from "./libc.js";

// glibc mallopt parameters (malloc.h).
const M_TRIM_THRESHOLD = -1;
const M_TOP_PAD = -2;
const M_MMAP_THRESHOLD = -3;

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
  const trim = libc.mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  const pad = libc.mallopt(M_TOP_PAD, 16 * 1024 * 1024);
  const mmap = libc.mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  return trim && pad && mmap;
}
