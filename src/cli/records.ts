// `adopt records list|clear [--db FILE]`: what the tuner has measured, per target, kernel and
// workload, and what `rewrite --verify` measured per file and rule; and a way to reset both.
import { AdoptError } from '../diag.js';
import { localTargetInfo } from '../tune/measurer.js';
import { type ClearFilter, clearRecords } from '../tune/clear.js';
import { RecordStore, type TuneRecord, bestByWorkload, measuredCount } from '../tune/records.js';
import { loadRegistry, workloadKey } from '../tune/space.js';
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

/** A filter naming no kernel or rule that exists is a typo more likely than a wish to remove
 *  nothing: say which names there are. Names found in the store count too (an older kernel). */
function checkClearNames(store: RecordStore, f: ClearFilter): void {
  if (!f.kernel && !f.rule) return;
  const stored = store.readAll().records;
  if (f.kernel) {
    let known = new Set(stored.map((r) => r.kernel));
    try { known = new Set([...known, ...Object.keys(loadRegistry().kernels)]); } catch { /* the store's names still count */ }
    if (!known.has(f.kernel)) throw new AdoptError(`no kernel '${f.kernel}'; kernels: ${[...known].sort().join(', ')}`);
  }
  if (f.rule) {
    const rules = new Set(readRecords(store.path).map((r) => r.rule));
    if (!rules.has(f.rule)) throw new AdoptError(`no rewrite --verify speed record of rule '${f.rule}' in ${store.path}${rules.size ? `; rules there: ${[...rules].sort().join(', ')}` : ''}`);
  }
}

/** The schedules at one workload that never ran correctly, with the reason the last record gives. */
function failuresOf(rs: TuneRecord[]): { schedule: TuneRecord['schedule']; status: string; error: string | null }[] {
  const last = new Map<string, TuneRecord>();
  for (const r of rs) if (r.status !== 'ok') last.set(JSON.stringify(r.schedule), r);
  return [...last.values()].map((r) => ({ schedule: r.schedule, status: r.status, error: r.error ?? null }));
}

export function recordsCommand(cmd: 'list' | 'clear', opts: { db?: string; json?: boolean } & ClearFilter): number {
  const store = new RecordStore(opts.db);
  if (cmd === 'clear') {
    const { kernel, rule, target, file } = opts;
    checkClearNames(store, { kernel, rule });
    const r = clearRecords(store.path, { kernel, rule, target, file });
    process.stdout.write(`removed ${r.tuning} tuning record(s) and ${r.speed} rewrite --verify speed record(s)${r.kept ? `, kept ${r.kept} line(s)` : ''}: ${store.path}\n`);
    return 0;
  }
  const { records } = store.readAll();
  const speed = readRecords(store.path);
  const speedRows = latestSpeed(speed);
  let here = '';
  let templates: Record<string, Record<string, string>> = {};
  try { ({ target: { key: here }, templates } = localTargetInfo()); } catch { /* without Python, targets are listed unmarked */ }
  const groups = new Map<string, TuneRecord[]>();
  for (const r of records) {
    const k = `${r.target}|${r.kernel}|${r.template}|${workloadKey(r.workload)}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const rows = [];
  for (const rs of groups.values()) {
    const { target, kernel, template, workload } = rs[0];
    const thisTarget = target === here;
    // of this target, but not what its kernel renders now: the tuner ignores it
    const stale = thisTarget && templates[kernel] !== undefined && !Object.values(templates[kernel]).includes(template);
    const b = bestByWorkload(rs).get(workloadKey(workload));
    rows.push({
      target, this_target: thisTarget, stale, kernel, template, workload, schedule: b?.schedule ?? null, median_s: b?.median_s ?? null,
      measurements: measuredCount(rs), finished: b?.finished ?? false, failed: failuresOf(rs),
    });
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
    const mark = r.stale ? 's' : r.this_target ? '*' : ' ';
    const head = `  ${mark} ${r.target} ${r.kernel.padEnd(20)} ${wl.padEnd(40)}`;
    const count = `${r.measurements} measured${r.finished || r.median_s === null ? '' : ', run not finished: the next run resumes it'}`;
    if (r.median_s !== null) process.stdout.write(`${head} ${(r.median_s * 1e3).toFixed(3).padStart(9)} ms  ${JSON.stringify(r.schedule)}  (${count})\n`);
    else process.stdout.write(`${head}    failed     every schedule measured failed  (${count})\n`);
    for (const f of r.failed) process.stdout.write(`      failed: ${JSON.stringify(f.schedule)} ${f.status}${f.error ? `: ${f.error}` : ''}\n`);
  }
  if (here && rows.some((r) => !r.this_target)) process.stdout.write('  (* this target; records of other targets are kept but never used here)\n');
  if (rows.some((r) => r.stale)) process.stdout.write('  (s this target, but an older template of the kernel: never used; adopt records clear --kernel K removes them)\n');
  return 0;
}
