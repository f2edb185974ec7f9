// What `rewrite --verify` measured, kept so later rewrites can use it: an append-only JSON-lines
// file of per-rule speed records, keyed by the file, the rule and the target. A rule measured
// slower than the original code on a file is left out of that file's later rewrites unless the
// user asks for it by name.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';

export interface SpeedRecord {
  kind: 'rule-speed';
  file: string;
  rule: string;
  target: string;
  host: string;
  torch: string;
  forward_ratio: number;
  train_ratio: number;
  slower: boolean;
  at: string;
}

/** A rewrite slower than this (rewritten / original, forward and training step together) is slower:
 *  below it, timings of tiny models are within run-to-run noise. */
export const SLOWER_THAN = 1.1;

export function recordsPath(): string {
  return resolve(process.env.ADOPT_DB ?? join('.adopt', 'records.jsonl'));
}

export function readRecords(path = recordsPath()): SpeedRecord[] {
  if (!existsSync(path)) return [];
  const out: SpeedRecord[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as SpeedRecord;
      if (r.kind === 'rule-speed') out.push(r);
    } catch { /* a torn last line from an interrupted write is ignored, the rest still counts */ }
  }
  return out;
}

export function appendRecord(r: Omit<SpeedRecord, 'kind' | 'host' | 'at'>, path = recordsPath()): SpeedRecord {
  const full: SpeedRecord = { kind: 'rule-speed', host: hostname(), at: new Date().toISOString(), ...r };
  mkdirSync(dirname(path), { recursive: true });
  appendFileSync(path, `${JSON.stringify(full)}\n`);
  return full;
}

/** The latest record per (file, rule) on this host and target that says the rule is slower. */
export function slowerRules(file: string, target: string, records = readRecords()): Map<string, SpeedRecord> {
  const latest = new Map<string, SpeedRecord>();
  const abs = resolve(file);
  for (const r of records) if (r.file === abs && r.target === target && r.host === hostname()) latest.set(r.rule, r);
  return new Map([...latest].filter(([, r]) => r.slower));
}

/** Forward and training step weigh alike: their geometric mean against the threshold. Callers
 *  pass the lower quartile of the interleaved pairs' ratios, so one noisy reading never drops a rule. */
export function isSlower(forward: number, train: number): boolean {
  return Math.sqrt(forward * train) > SLOWER_THAN;
}
