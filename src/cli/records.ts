// `adopt records list|clear [--db FILE]`: what the tuner has measured, per target, kernel and
// workload, and what `rewrite --verify` measured per file and rule; and a way to reset both.
import { AdoptError } from '../diag.js';
import { localTargetInfo } from '../tune/measurer.js';
import { type ClearFilter, clearRecords } from '../tune/clear.js';
import { RecordStore, bestByWorkload } from '../tune/records.js';
import { type SpeedRecord, machineKey, readRecords } from '../verify/records.js';

/** The latest speed record per (machine, target, file, rule). */
function latestSpeed(records: SpeedRecord[]): SpeedRecord[] {
  const latest = new Map<string, SpeedRecord>();
  for (const r of records) latest.set(`${r.machine ?? r.host}|${r.target}|${r.file}|${r.rule}`, r);
  return [...latest.values()];
}

function printSpeed(rows: SpeedRecord[]): void {
  if (!rows.length) return;
  const here = machineKey();
  process.stdout.write(`rewrite --verify speed records (time rewritten / original, lower quartile of interleaved pairs; above 1 is slower):\n`);
  for (const r of rows) {
    process.stdout.write(`  ${r.machine === here ? '*' : ' '} ${r.target.padEnd(5)} ${r.rule.padEnd(22)} forward x${r.forward_ratio.toFixed(2)}  train x${r.train_ratio.toFixed(2)}  ${r.slower ? 'slower: left out of later rewrites of' : 'kept for'} ${r.file}\n`);
  }
  if (rows.some((r) => r.machine !== here)) process.stdout.write('  (* this machine; records of other machines are never used here)\n');
}

export function recordsCommand(cmd: 'list' | 'clear', opts: { db?: string; json?: boolean } & ClearFilter): number {
  const store = new RecordStore(opts.db);
  if (cmd === 'clear') {
    const { kernel, rule, target, file } = opts;
    const r = clearRecords(store.path, { kernel, rule, target, file });
    process.stdout.write(`removed ${r.tuning} tuning record(s) and ${r.speed} rewrite --verify speed record(s)${r.kept ? `, kept ${r.kept} line(s)` : ''}: ${store.path}\n`);
    return 0;
  }
  const speed = readRecords(store.path);
  const { records } = store.readAll();
  const speedRows = latestSpeed(speed);
  let here = '';
  try { here = localTargetInfo().target.key; } catch { /* without Python, targets are listed unmarked */ }
  const groups = new Map<string, typeof records>();
  for (const r of records) {
    const k = `${r.target}|${r.kernel}|${r.template}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const rows = [];
  for (const [k, rs] of groups) {
    const [target, kernel, template] = k.split('|');
    for (const b of bestByWorkload(rs).values()) {
      rows.push({ target, this_target: target === here, kernel, template, workload: b.workload, schedule: b.schedule, median_s: b.median_s, measurements: b.measurements });
    }
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ db: store.path, target: here || null, records: records.length, best: rows, speed: speedRows }, null, 1)}\n`);
    return 0;
  }
  printSpeed(speedRows);
  if (!records.length) {
    process.stdout.write(`no tuning records in ${store.path}\n`);
    return 0;
  }
  process.stdout.write(`${records.length} record(s) in ${store.path}${here ? ` (this target: ${here})` : ''}\n`);
  for (const r of rows) {
    const wl = Object.entries(r.workload).map(([a, v]) => `${a}=${v}`).join(',');
    process.stdout.write(`  ${r.this_target ? '*' : ' '} ${r.target} ${r.kernel.padEnd(20)} ${wl.padEnd(40)} ${(r.median_s * 1e3).toFixed(3).padStart(9)} ms  ${JSON.stringify(r.schedule)}  (${r.measurements} measured)\n`);
  }
  if (here && rows.some((r) => !r.this_target)) process.stdout.write('  (* this target; records of other targets are kept but never used here)\n');
  if (!rows.length) throw new AdoptError('records exist but none ran correctly');
  return 0;
}
