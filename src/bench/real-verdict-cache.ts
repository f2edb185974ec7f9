// bench:real's verdict cache: a file's verification is a pure function of the original text, the
// rewritten text, the harness that checks them and the interpreter that runs it, so a verdict is
// kept under a hash of exactly those and a later run re-verifies only what changed. Stored as JSON
// lines, appended with one write each (O_APPEND: concurrent runs never interleave a line), read
// back last-wins; a line that does not parse is skipped, never trusted.
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import type { RealVerdict } from './real-verify.js';

/** What a verdict depends on besides the two texts. */
export interface VerdictContext {
  /** Hash of the harness's sources (harnessHash). */
  harness: string;
  python: string;
  torch: string;
  /** Harness options that change the check (dtype, time limit). */
  options: string;
}

export interface CacheEntry { key: string; file: string; verdict: RealVerdict }

function sha256(parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${p.length}:`).update(p);
  return h.digest('hex');
}

function sourcesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name === '__pycache__' || name.endsWith('.pyc')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourcesUnder(path));
    else out.push(path);
  }
  return out;
}

/** One hash of every file under the given directories (path and content): any edit to the
 *  harness or the kernels invalidates every cached verdict. */
export function harnessHash(dirs: string[]): string {
  const parts: string[] = [];
  for (const dir of dirs) for (const path of sourcesUnder(dir)) parts.push(relative(dirname(dir), path), readFileSync(path, 'utf8'));
  return sha256(parts);
}

/** The cache key of one file's verification. `file` (package pin and path) is part of it: a
 *  helper module is checked through its package's other files, which the pin fixes. */
export function verdictKey(file: string, original: string, rewritten: string, ctx: VerdictContext): string {
  return sha256([file, original, rewritten, ctx.harness, ctx.python, ctx.torch, ctx.options]);
}

/** A verdict that says more about the machine's load than the rewrite (a time limit hit, a
 *  harness killed) is not kept: the next run tries again. */
export function isTransient(v: RealVerdict): boolean {
  const texts = [v.reason, ...(v.not_runnable ?? []), ...(v.by_rule ?? []).map((r) => r.reason)];
  return texts.some((t) => t !== undefined && /timed out after|harness exited with (null|SIG)/.test(t));
}

function isEntry(x: unknown): x is CacheEntry {
  const e = x as CacheEntry;
  return !!e && typeof e.key === 'string' && typeof e.file === 'string' && !!e.verdict && typeof e.verdict.status === 'string' && !!e.verdict.classes;
}

export class VerdictCache {
  private readonly entries = new Map<string, RealVerdict>();
  /** Line numbers (1-based) that did not parse as an entry (a torn or foreign line), skipped. */
  readonly skippedLines: number[] = [];
  hits = 0;
  misses = 0;

  constructor(readonly path: string) {
    if (!existsSync(path)) return;
    readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      try {
        const e = JSON.parse(line) as unknown;
        if (isEntry(e)) this.entries.set(e.key, e.verdict);
        else this.skippedLines.push(i + 1);
      } catch {
        this.skippedLines.push(i + 1);
      }
    });
  }

  get size(): number { return this.entries.size; }

  /** The cached verdict for `key`, counted as a hit or a miss. */
  get(key: string): RealVerdict | undefined {
    const v = this.entries.get(key);
    if (v) this.hits++;
    else this.misses++;
    return v;
  }

  /** Keeps a verdict (unless transient), appended as one line in one write. */
  put(key: string, verdict: RealVerdict): boolean {
    if (isTransient(verdict)) return false;
    this.entries.set(key, verdict);
    mkdirSync(dirname(this.path), { recursive: true });
    appendFileSync(this.path, `${JSON.stringify({ key, file: verdict.file, verdict } satisfies CacheEntry)}\n`, { flag: 'a' });
    return true;
  }
}

/** Verifies through the cache: a hit is returned as it was stored; a miss runs `verify` and keeps
 *  its verdict. `cached` says which it was. */
export async function cachedVerdict(cache: VerdictCache | undefined, key: string, verify: () => RealVerdict | Promise<RealVerdict>): Promise<{ verdict: RealVerdict; cached: boolean }> {
  const hit = cache?.get(key);
  if (hit) return { verdict: hit, cached: true };
  const verdict = await verify();
  cache?.put(key, verdict);
  return { verdict, cached: false };
}
