// The merge into a schedule file: done under the file's lock (a writer that finds it held waits,
// and is refused by name when it stays held), written in one rename, and refused, the file left
// as it is, where the file on disk is not a schedule file, has an entry that is not one, or names
// a kernel there is none of.
import { chmodSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdoptError } from '../../src/diag.js';
import { lockPathOf } from '../../src/file-lock.js';
import { SCHEDULE_FILE, mergeScheduleFile, readScheduleFile } from '../../src/tune/schedule-file.js';
import { setRegistry } from '../../src/tune/space.js';
import { TARGET, registry, workload } from '../helpers/synth-kernel.js';
import { tempProject } from '../helpers/ir.js';

const kernels = ['synth'];
const entry = (rows: number, block = 2) => ({ kernel: 'synth', workload: { rows, dtype: 'float32' }, schedule: { block, unroll: 1 } });
const file = (entries: unknown[], target: unknown = TARGET) => `${JSON.stringify({ format: 'adopt-schedules/1', target, entries })}\n`;

describe('the schedule file merge', () => {
  it('keeps what the file holds, replaces an entry of the same kernel and workload, and leaves no lock or temporary file', () => {
    const dir = tempProject({ [SCHEDULE_FILE]: file([entry(8), entry(16)]) });
    const path = join(dir, SCHEDULE_FILE);
    chmodSync(path, 0o640);
    mergeScheduleFile(path, TARGET, [entry(16, 8), entry(32)], { kernels, warn: () => {} });
    expect(JSON.parse(readFileSync(path, 'utf8')).entries).toEqual([entry(8), entry(16, 8), entry(32)]);
    expect(statSync(path).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual([SCHEDULE_FILE]);
    // a new file, its directory made
    const fresh = join(dir, 'sub', SCHEDULE_FILE);
    mergeScheduleFile(fresh, TARGET, [entry(8)], { kernels });
    expect(JSON.parse(readFileSync(fresh, 'utf8')).entries).toEqual([entry(8)]);
  });

  it('is refused by name when the lock stays held by a live process, the file left as it is', () => {
    const dir = tempProject({ [SCHEDULE_FILE]: file([entry(8)]) });
    const path = join(dir, SCHEDULE_FILE);
    writeFileSync(lockPathOf(path), JSON.stringify({ pid: process.ppid, host: hostname(), at: new Date().toISOString(), token: 'theirs' }));
    expect(() => mergeScheduleFile(path, TARGET, [entry(16)], { kernels, lock: { waitMs: 100 } }))
      .toThrow(new RegExp(`^cannot write the schedule file ${path}: ${path}\\.lock is held by process ${process.ppid} .*remove ${path}\\.lock$`));
    expect(readFileSync(path, 'utf8')).toBe(file([entry(8)]));
  });

  it('breaks a lock left by a process that is gone, with a message, and merges', () => {
    const dir = tempProject({ [SCHEDULE_FILE]: file([entry(8)]) });
    const path = join(dir, SCHEDULE_FILE);
    writeFileSync(lockPathOf(path), JSON.stringify({ pid: 99_999_999, host: hostname(), at: new Date().toISOString(), token: 'gone' }));
    const said: string[] = [];
    mergeScheduleFile(path, TARGET, [entry(16)], { kernels, lock: { waitMs: 100, say: (m) => said.push(m) } });
    expect(said).toEqual([`removed the stale lock ${path}.lock: its owner, process 99999999, is no longer running`]);
    expect(JSON.parse(readFileSync(path, 'utf8')).entries).toEqual([entry(8), entry(16)]);
    expect(existsSync(lockPathOf(path))).toBe(false);
  });

  it('refuses a file on disk that is corrupt, has an entry that is not one, or names an unknown kernel, naming the file and the entry; nothing is written', () => {
    const cases: [string, RegExp][] = [
      ['{"format": "adopt-schedules/1", "entries": [', /is not a schedule file \(not JSON: .*\); not overwritten: name another file or remove it$/],
      [file([entry(8), null]), /: entry 1 is not a schedule entry \(it takes a "kernel" name, a "workload" object and a "schedule" object\); not overwritten: correct or remove that entry$/],
      [file([{ kernel: 'synth', schedule: { block: 1 } }]), /: entry 0 is not a schedule entry/],
      [file([{ kernel: 'synth', workload: [1], schedule: { block: 1 } }]), /: entry 0 is not a schedule entry/],
      [file([entry(8), { ...entry(16), kernel: 'synht' }]), /: entry 1 names unknown kernel 'synht' \(known: synth\); not overwritten: correct or remove that entry$/],
    ];
    for (const [text, message] of cases) {
      const dir = tempProject({ [SCHEDULE_FILE]: text });
      const path = join(dir, SCHEDULE_FILE);
      let err: unknown;
      try { mergeScheduleFile(path, TARGET, [entry(32)], { kernels }); } catch (e) { err = e; }
      expect(err, text).toBeInstanceOf(AdoptError);
      expect((err as Error).message.startsWith(path), text).toBe(true);
      expect((err as Error).message, text).toMatch(message);
      expect(readFileSync(path, 'utf8'), text).toBe(text);
      expect(readdirSync(dir), text).toEqual([SCHEDULE_FILE]);
      // the check before any measurement says the same
      expect(() => readScheduleFile(path, kernels), text).toThrow(message);
    }
  });

  it('keeps a file of no target (written by hand) whole, its entries before the new ones', () => {
    const mine = { kernel: 'synth', workload, schedule: { block: 4, unroll: 2 } };
    const dir = tempProject({ [SCHEDULE_FILE]: file([mine], undefined) });
    const path = join(dir, SCHEDULE_FILE);
    const warned: string[] = [];
    mergeScheduleFile(path, TARGET, [entry(8)], { kernels, warn: (m) => warned.push(m) });
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ format: 'adopt-schedules/1', target: TARGET, entries: [mine, entry(8)] });
    expect(warned).toEqual([]);
  });
});
