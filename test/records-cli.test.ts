// `rewrite --verify` speed records live in the user-level store beside the tuner's records:
// `adopt records list` shows both, `adopt records clear` resets both, and a record of another
// machine never drops a rule here.
import { appendFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RecordStore } from '../src/tune/records.js';
import { appendRecord, machineKey, readRecords, recordsPath, slowerRules } from '../src/verify/records.js';
import { adopt } from './helpers/cli.js';

const speed = { file: '/m/model.py', rule: 'attention', target: 'cpu', torch: '1.13', forward_ratio: 1.3, train_ratio: 1.25, slower: true };

describe('speed records of rewrite --verify', () => {
  it('share the tuner\'s user-level store ($ADOPT_DB)', () => {
    const old = process.env.ADOPT_DB;
    process.env.ADOPT_DB = '/x/db.jsonl';
    try { expect(recordsPath()).toBe(new RecordStore().path); } finally { if (old === undefined) delete process.env.ADOPT_DB; else process.env.ADOPT_DB = old; }
  });

  it('count on this machine only', () => {
    const here = { ...speed, kind: 'rule-speed' as const, host: 'h', at: '', machine: machineKey() };
    const elsewhere = { ...here, machine: 'another-machine' };
    expect([...slowerRules('/m/model.py', 'cpu', [elsewhere]).keys()]).toEqual([]);
    expect([...slowerRules('/m/model.py', 'cpu', [here]).keys()]).toEqual(['attention']);
    expect([...slowerRules('/m/model.py', 'cuda', [here]).keys()]).toEqual([]);
  });

  it('are listed and cleared by adopt records', () => {
    const db = join(mkdtempSync(join(tmpdir(), 'adopt-records-')), 'records.jsonl');
    appendRecord(speed, db);
    new RecordStore(db).append({ kernel: 'rms_norm', template: 't', workload: { rows: 8, n: 8, dtype: 'float32' }, target: 'k', schedule: { chunk: 4 }, status: 'ok', median_s: 1e-5, source: 'measure' });
    expect(readRecords(db)).toHaveLength(1);
    const list = adopt(['records', 'list', '--db', db]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/rewrite --verify speed records \(time rewritten \/ original.*above 1 is slower\)/);
    expect(list.stdout).toMatch(/\* cpu +attention +forward x1\.30 +train x1\.25 +slower: left out of later rewrites of \/m\/model\.py/);
    expect(JSON.parse(adopt(['records', 'list', '--db', db, '--json']).stdout).speed).toHaveLength(1);
    const clear = adopt(['records', 'clear', '--db', db]);
    expect(clear.stdout).toMatch(/removed 1 tuning record\(s\) and 1 rewrite --verify speed record\(s\)/);
    expect(existsSync(db)).toBe(false);
  });

  it('are cleared selectively, keeping every other line as it was', () => {
    const db = join(mkdtempSync(join(tmpdir(), 'adopt-records-')), 'records.jsonl');
    const store = new RecordStore(db, () => {});
    const tune = (kernel: string, target: string) => store.append({ kernel, template: 't', workload: { rows: 8, n: 8, dtype: 'float32' }, target, schedule: { chunk: 4 }, status: 'ok', median_s: 1e-5, source: 'measure' });
    tune('rms_norm', 'k1');
    tune('rms_norm', 'k2');
    tune('softmax', 'k1');
    appendRecord(speed, db);
    appendRecord({ ...speed, rule: 'softmax' }, db);
    appendFileSync(db, 'not json\n');
    const kernel = adopt(['records', 'clear', '--db', db, '--kernel', 'rms_norm', '--target', 'k1']);
    expect(kernel.code, kernel.stderr).toBe(0);
    expect(kernel.stdout).toMatch(/removed 1 tuning record\(s\) and 0 rewrite --verify speed record\(s\), kept 5 line\(s\)/);
    expect(store.readAll().records.map((r) => `${r.kernel}@${r.target}`)).toEqual(['rms_norm@k2', 'softmax@k1']);
    const rule = adopt(['records', 'clear', '--db', db, '--rule', 'attention']);
    expect(rule.stdout).toMatch(/removed 0 tuning record\(s\) and 1 rewrite --verify speed record\(s\)/);
    expect(readRecords(db).map((r) => r.rule)).toEqual(['softmax']);
    expect(readFileSync(db, 'utf8')).toMatch(/^not json$/m);
    adopt(['records', 'clear', '--db', db]);
    expect(readFileSync(db, 'utf8')).toBe('not json\n');
  });
});

describe('tuning records listed by adopt records', () => {
  const rec = { kernel: 'rms_norm', workload: { rows: 8, n: 8, dtype: 'float32' }, target: 'k', schedule: { chunk: 4 }, source: 'measure' as const };

  it('lists a workload where every schedule failed, with the reason, and exits 0', () => {
    const db = join(mkdtempSync(join(tmpdir(), 'adopt-records-')), 'records.jsonl');
    const store = new RecordStore(db, () => {});
    store.append({ ...rec, template: 't', status: 'crash', median_s: null, error: 'Segmentation fault' });
    store.append({ ...rec, template: 't', schedule: { chunk: 8 }, status: 'timeout', median_s: null });
    const list = adopt(['records', 'list', '--db', db]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/rms_norm +rows=8,n=8,dtype=float32 +failed +every schedule measured failed +\(2 measured\)/);
    expect(list.stdout).toMatch(/failed: \{"chunk":4\} crash: Segmentation fault/);
    expect(list.stdout).toMatch(/failed: \{"chunk":8\} timeout\n/);
  });

  it('refuses a store that is a directory, and a kernel filter that names no kernel', () => {
    const dir = mkdtempSync(join(tmpdir(), 'adopt-records-'));
    const list = adopt(['records', 'list', '--db', dir]);
    expect(list.code).toBe(2);
    expect(list.stderr).toMatch(/the record store .* is a directory/);
    const db = join(dir, 'records.jsonl');
    new RecordStore(db, () => {}).append({ ...rec, template: 't', status: 'ok', median_s: 1e-5 });
    const clear = adopt(['records', 'clear', '--db', db, '--kernel', 'rmsnorm']);
    expect(clear.code).toBe(2);
    expect(clear.stderr).toMatch(/no kernel 'rmsnorm'; kernels: .*rms_norm/);
    expect(new RecordStore(db, () => {}).readAll().records).toHaveLength(1);
  });
});

describe('records of an older template', () => {
  it('are marked stale, not usable', () => {
    const db = join(mkdtempSync(join(tmpdir(), 'adopt-records-')), 'records.jsonl');
    const here = JSON.parse(adopt(['records', 'list', '--db', db, '--json']).stdout).target as string;
    new RecordStore(db, () => {}).append({ kernel: 'rms_norm', template: 'an-old-template', workload: { rows: 8, n: 8, dtype: 'float32' }, target: here, schedule: { chunk: 4 }, status: 'ok', median_s: 1e-5, source: 'retime' });
    const list = adopt(['records', 'list', '--db', db]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`\\n  s ${here} rms_norm`));
    expect(list.stdout).toMatch(/s this target, but an older template of the kernel: never used/);
    expect(JSON.parse(adopt(['records', 'list', '--db', db, '--json']).stdout).best[0]).toMatchObject({ this_target: true, stale: true });
  });
});
