// The lock beside a file that processes read, change and write back: taken and released around
// the change, an abandoned lock (its owner gone, or too old) removed with a message, a live
// owner's lock waited for and then refused by name.
import { existsSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LockBusy, acquire, lockPathOf, withLock } from '../../src/file-lock.js';
import { tempProject } from '../helpers/ir.js';

// beyond Linux's largest pid (2^22): no process has it
const DEAD_PID = 99_999_999;
const ownedBy = (lock: string, pid: number, host = hostname()) =>
  writeFileSync(lock, JSON.stringify({ pid, host, at: new Date().toISOString(), token: 'theirs' }));

describe('the file lock', () => {
  it('is held while the change runs and gone after it, even when the change throws', () => {
    const dir = tempProject({});
    const target = join(dir, 'f.json');
    const lock = lockPathOf(target);
    expect(withLock(target, () => existsSync(lock))).toBe(true);
    expect(existsSync(lock)).toBe(false);
    expect(() => withLock(target, () => { throw new Error('boom'); })).toThrow('boom');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('removes the lock of an owner that is no longer running, with a message, and takes it', () => {
    const dir = tempProject({});
    const target = join(dir, 'f.json');
    ownedBy(lockPathOf(target), DEAD_PID);
    const said: string[] = [];
    expect(withLock(target, () => 'ran', { waitMs: 50, say: (m) => said.push(m) })).toBe('ran');
    expect(said).toEqual([`removed the stale lock ${lockPathOf(target)}: its owner, process ${DEAD_PID}, is no longer running`]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('removes a lock older than the bound whatever its owner (another host, a reused pid)', () => {
    const dir = tempProject({});
    const target = join(dir, 'f.json');
    const lock = lockPathOf(target);
    for (const [pid, host] of [[process.pid, hostname()], [DEAD_PID, 'another-host']] as const) {
      ownedBy(lock, pid, host);
      const old = new Date(Date.now() - 120_000);
      utimesSync(lock, old, old);
      const said: string[] = [];
      withLock(target, () => {}, { waitMs: 50, staleMs: 60_000, say: (m) => said.push(m) });
      expect(said.length).toBe(1);
      expect(said[0]).toMatch(new RegExp(`^removed the stale lock .*f\\.json\\.lock: it is 1[12]\\d s old, and a lock is held for milliseconds \\(owner: process ${pid} on ${host}\\)$`));
    }
    // one whose owner is not written (its maker stopped between making and writing it) as well
    writeFileSync(lock, '');
    const old = new Date(Date.now() - 30_000);
    utimesSync(lock, old, old);
    const said: string[] = [];
    withLock(target, () => {}, { waitMs: 50, say: (m) => said.push(m) });
    expect(said[0]).toMatch(/removed the stale lock .* it is 30 s old/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('waits for a live owner, then refuses, naming the lock, its owner and what to do; the lock is left as it is', () => {
    const dir = tempProject({});
    const target = join(dir, 'f.json');
    const lock = lockPathOf(target);
    ownedBy(lock, process.ppid);
    const t0 = Date.now();
    let err: unknown;
    try { acquire(target, { waitMs: 300, say: () => {} }); } catch (e) { err = e; }
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(err).toBeInstanceOf(LockBusy);
    expect((err as Error).message).toMatch(new RegExp(`^${lock.replace(/[.]/g, '\\.')} is held by process ${process.ppid} on ${hostname()} since .* \\(waited 0\\.3 s for it\\); if no adopt process is using f\\.json, remove ${lock.replace(/[.]/g, '\\.')}$`));
    expect(existsSync(lock)).toBe(true);
  });

  it('leaves a lock that is no longer its own to its new owner', () => {
    const dir = tempProject({});
    const target = join(dir, 'f.json');
    const said: string[] = [];
    const release = acquire(target, { say: (m) => said.push(m) });
    // judged stale and taken over by another process meanwhile
    ownedBy(lockPathOf(target), process.ppid);
    release();
    expect(existsSync(lockPathOf(target))).toBe(true);
    expect(said).toEqual([`the lock ${lockPathOf(target)} was removed as stale while this process held it: another process may have written ${target} meanwhile`]);
  });
});
