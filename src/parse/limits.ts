// How large an input file adopt takes: the user's limit (`--max-file-size`), and a ceiling from
// the memory this process may use, so a file too large to analyse is refused with a reason
// instead of running out of memory.
import { getHeapStatistics } from 'node:v8';
import { AdoptError } from '../diag.js';

export const DEFAULT_MAX_MIB = 8;

/** Peak memory the analysis and the rewrite hold per byte of source: `npm run bench:scale`
 *  measures about 320 for a rewrite (the IR, the syntax tree in JavaScript, the
 *  sites, the rewritten text and its check parse); rounded up for headroom. */
export const MEMORY_PER_SOURCE_BYTE = 400;

/** The largest file this process can analyse and rewrite in the memory it may use. */
export function memoryCeilingBytes(): number {
  return Math.floor(getHeapStatistics().heap_size_limit / MEMORY_PER_SOURCE_BYTE);
}

/** `--max-file-size <MiB>` in bytes; a clear error for anything but a positive number. */
export function maxFileSizeBytes(option: string | undefined): number {
  const mib = Number(option ?? DEFAULT_MAX_MIB);
  if (option !== undefined && option.trim() === '' || !Number.isFinite(mib) || mib <= 0) {
    throw new AdoptError(`--max-file-size must be a positive number of MiB, got '${option}'`);
  }
  return Math.round(mib * 1048576);
}

const mib = (bytes: number) => (bytes / 1048576).toFixed(1);

/** Why a file of `size` bytes is not read, or undefined when it may be. */
export function sizeRefusal(size: number, maxBytes: number): string | undefined {
  if (size > maxBytes) return `file is ${mib(size)} MiB, over the ${mib(maxBytes)} MiB limit (raise it with --max-file-size)`;
  const ceiling = memoryCeilingBytes();
  if (size > ceiling) {
    const heap = getHeapStatistics().heap_size_limit;
    return `file is ${mib(size)} MiB: analysing it needs about ${Math.ceil((size * MEMORY_PER_SOURCE_BYTE) / 1048576)} MiB of memory, over the ${Math.floor(heap / 1048576)} MiB this process may use (${mib(ceiling)} MiB of source at most); split the file, or raise the memory with NODE_OPTIONS=--max-old-space-size=<MiB>`;
  }
  return undefined;
}
