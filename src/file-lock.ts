// An exclusive lock on a file that several processes read, change and write back (read-modify-
// write, where an atomic write alone still lets one writer's change overwrite another's): a lock
// file beside it, created with O_EXCL so that exactly one process makes it. It is meant to be held
// for the few milliseconds of one read-change-write, so a lock that lingers is an abandoned one: a
// lock whose owner process is gone (on this host), or older than `staleMs` (any host, a reused
// pid), is removed with a message. A lock held by a live owner is waited for, up to `waitMs`, then
// refused with a message naming the lock, its owner and what to do. Depends on nothing of adopt's,
// so any layer may use it.
import { closeSync, linkSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';

export const LOCK_STALE_MS = 60_000;
export const LOCK_WAIT_MS = 90_000;

export interface LockOptions {
  /** How long to wait for a live owner, in milliseconds. */
  waitMs?: number;
  /** Age (by the lock file's mtime) past which a lock is taken as abandoned, in milliseconds. */
  staleMs?: number;
  /** Where the message that a stale lock was removed goes (stderr when not given). */
  say?: (message: string) => void;
}

/** A lock that could not be taken: the message says by whom it is held and what to do. */
export class LockBusy extends Error {
  constructor(message: string, readonly lockPath: string) {
    super(message);
    this.name = 'LockBusy';
  }
}

type Owner = { pid: number; host: string; at: string; token: string };

/** The lock file of `target`. */
export function lockPathOf(target: string): string {
  return `${target}.lock`;
}

const defaultSay = (m: string) => process.stderr.write(`adopt: ${m}\n`);

/** Runs `fn` holding the lock of `target` (whose directory must exist), and releases it however
 *  `fn` ends. Throws LockBusy when the lock is not had within `waitMs`. */
export function withLock<T>(target: string, fn: () => T, o: LockOptions = {}): T {
  const release = acquire(target, o);
  try {
    return fn();
  } finally {
    release();
  }
}

/** Takes the lock of `target`; returns the function that releases it. */
export function acquire(target: string, o: LockOptions = {}): () => void {
  const lock = lockPathOf(target);
  const waitMs = o.waitMs ?? LOCK_WAIT_MS;
  const staleMs = o.staleMs ?? LOCK_STALE_MS;
  const say = o.say ?? defaultSay;
  const deadline = Date.now() + waitMs;
  let pause = 2;
  for (;;) {
    const token = tryCreate(lock);
    if (token) return () => release(target, lock, token, say);
    const seen = inspect(lock, staleMs);
    if (seen.stale) {
      breakStale(lock, seen.ino, staleMs, say);
      if (Date.now() < deadline) continue;
    }
    if (Date.now() >= deadline) {
      const who = seen.owner ? `process ${seen.owner.pid} on ${seen.owner.host} since ${seen.owner.at}` : 'another process';
      throw new LockBusy(`${lock} is held by ${who} (waited ${waitMs < 10_000 ? (waitMs / 1000).toFixed(1) : Math.round(waitMs / 1000)} s for it); if no adopt process is using ${basename(target)}, remove ${lock}`, lock);
    }
    // a holder keeps the lock for milliseconds: a short pause, growing, with jitter so that
    // several waiters do not retry in step
    sleep(Math.min(pause + Math.random() * pause, Math.max(1, deadline - Date.now())));
    pause = Math.min(pause * 2, 100);
  }
}

/** Creates the lock file with this process as its owner; null when it exists already. */
function tryCreate(lock: string): string | null {
  let fd: number;
  try {
    fd = openSync(lock, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return null;
    throw e;
  }
  const token = `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const owner: Owner = { pid: process.pid, host: hostname(), at: new Date().toISOString(), token };
  let written = false;
  try {
    writeSync(fd, JSON.stringify(owner));
    written = true;
  } finally {
    closeSync(fd);
    if (!written) rmSync(lock, { force: true });
  }
  return token;
}

function readOwner(lock: string): Owner | null {
  try {
    const o = JSON.parse(readFileSync(lock, 'utf8')) as Owner;
    return o && typeof o.pid === 'number' && typeof o.host === 'string' ? o : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, owned by another user
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

type Seen = { stale: string | null; ino: number; owner: Owner | null };

/** Whether the lock now on disk is abandoned, and why. A lock just made may not have its owner
 *  written yet: one with no readable owner is judged by its age alone. */
function inspect(lock: string, staleMs: number): Seen {
  let st;
  try {
    st = statSync(lock);
  } catch {
    return { stale: null, ino: -1, owner: null }; // released meanwhile: try again
  }
  const owner = readOwner(lock);
  const age = Date.now() - st.mtimeMs;
  if (owner && owner.host === hostname() && owner.pid !== process.pid && !alive(owner.pid)) {
    return { stale: `its owner, process ${owner.pid}, is no longer running`, ino: st.ino, owner };
  }
  const bound = owner ? staleMs : Math.min(staleMs, 5_000);
  if (age > bound) return { stale: `it is ${Math.round(age / 1000)} s old, and a lock is held for milliseconds${owner ? ` (owner: process ${owner.pid} on ${owner.host})` : ''}`, ino: st.ino, owner };
  return { stale: null, ino: st.ino, owner };
}

/** Removes an abandoned lock. Judging and removing are done under a second, short-lived lock, so
 *  that two processes that both found the lock stale cannot remove it twice: the second would
 *  remove the fresh lock the first has taken since. */
function breakStale(lock: string, ino: number, staleMs: number, say: (m: string) => void): void {
  const guard = `${lock}.break`;
  let fd: number;
  try {
    fd = openSync(guard, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // another process is breaking it now; a guard left by one that died there is old at once
    try {
      if (Date.now() - statSync(guard).mtimeMs > 5_000) rmSync(guard, { force: true });
    } catch { /* gone meanwhile */ }
    sleep(2);
    return;
  }
  closeSync(fd);
  try {
    const seen = inspect(lock, staleMs);
    if (!seen.stale || seen.ino !== ino) return;
    // renamed away first, so that what is removed is the very file that was judged; one that
    // is not (its owner released it and another process took it in between) is put back
    const away = join(dirname(lock), `.${basename(lock)}.${process.pid}.stale`);
    renameSync(lock, away);
    if (statSync(away).ino !== ino) {
      try { linkSync(away, lock); } catch { /* a newer lock is there: it stands */ }
      rmSync(away, { force: true });
      return;
    }
    rmSync(away, { force: true });
    say(`removed the stale lock ${lock}: ${seen.stale}`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  } finally {
    rmSync(guard, { force: true });
  }
}

/** Removes the lock if it is still this holder's: one judged stale and taken over meanwhile is
 *  the new owner's to remove. */
function release(target: string, lock: string, token: string, say: (m: string) => void): void {
  if (readOwner(lock)?.token !== token) {
    say(`the lock ${lock} was removed as stale while this process held it: another process may have written ${target} meanwhile`);
    return;
  }
  rmSync(lock, { force: true });
}

const cell = new Int32Array(new SharedArrayBuffer(4));

/** Blocks this thread for `ms` milliseconds (the callers are synchronous). */
function sleep(ms: number): void {
  Atomics.wait(cell, 0, 0, ms);
}
