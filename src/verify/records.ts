// What `rewrite --verify` measured, kept so later rewrites can use it: per-rule speed records,
// keyed by the file, the rule and the target (the device and this machine), in the user-level
// record store the tuner writes too (`adopt records list|clear` shows and resets both). A rule
// measured slower than the original code on a file is left out of that file's later rewrites
// unless the user asks for it by name.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { resolve } from 'node:path';
import { appendStoreLine } from '../line-store.js';
import { defaultDbPath } from '../tune/records.js';

export interface SpeedRecord {
  kind: 'rule-speed';
  file: string;
  rule: string;
  target: string;
  /** This machine (host, CPU model, core count): a record of another machine is never used here. */
  machine?: string;
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
  return defaultDbPath();
}

/** A key of this machine that needs no Python: timings from another machine or CPU never count. */
export function machineKey(): string {
  const c = cpus();
  return createHash('sha256').update(`${hostname()}|${c[0]?.model ?? '?'}|${c.length}`).digest('hex').slice(0, 16);
}

function isSpeedRecord(r: unknown): r is SpeedRecord {
  const o = r as Partial<SpeedRecord> | null;
  return !!o && typeof o === 'object' && o.kind === 'rule-speed' && typeof o.file === 'string' && typeof o.rule === 'string'
    && typeof o.target === 'string' && typeof o.forward_ratio === 'number' && typeof o.train_ratio === 'number' && typeof o.slower === 'boolean';
}

export function readRecords(path = recordsPath()): SpeedRecord[] {
  if (!existsSync(path)) return [];
  const out: SpeedRecord[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let r: unknown;
    try { r = JSON.parse(line); } catch { continue; /* a torn last line from an interrupted write: the rest still counts */ }
    if (isSpeedRecord(r)) out.push(r);
  }
  return out;
}

export function appendRecord(r: Omit<SpeedRecord, 'kind' | 'host' | 'at'>, path = recordsPath()): SpeedRecord {
  const full: SpeedRecord = { kind: 'rule-speed', host: hostname(), machine: machineKey(), at: new Date().toISOString(), ...r };
  appendStoreLine(path, JSON.stringify(full));
  return full;
}

/** The latest record per (file, rule) on this machine and target that says the rule is slower. */
export function slowerRules(file: string, target: string, records = readRecords()): Map<string, SpeedRecord> {
  const latest = new Map<string, SpeedRecord>();
  const abs = resolve(file);
  const here = machineKey();
  for (const r of records) if (r.file === abs && r.target === target && r.machine === here) latest.set(r.rule, r);
  return new Map([...latest].filter(([, r]) => r.slower));
}

/** Forward and training step weigh alike: their geometric mean against the threshold. Callers
 *  pass the lower quartile of the interleaved pairs' ratios, so one noisy reading never drops a rule. */
export function isSlower(forward: number, train: number): boolean {
  return Math.sqrt(forward * train) > SLOWER_THAN;
}
