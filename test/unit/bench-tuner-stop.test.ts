// The replay benchmark's stop rule: a run stops where no figure it reports can change any more.
import { describe, expect, it } from 'vitest';
import { doneAt, reachAt } from '../../src/bench/tuner.js';
import type { Trial } from '../../src/tune/strategies/types.js';

const trial = (median_s: number | null, status: Trial['status'] = 'ok'): Trial => ({ schedule: {}, status, median_s, compile_s: 0, run_s: 0 });
const BEST = 1;

describe('doneAt', () => {
  it('stops at the optimum', () => {
    expect(doneAt([trial(2), trial(BEST)], BEST)).toBe(true);
    expect(doneAt([trial(2), trial(1.5)], BEST)).toBe(false);
  });

  it('stops at 99% of the optimum only after the last checkpoint (64 measurements)', () => {
    const near = BEST / 0.995;
    const few = [trial(near), ...Array.from({ length: 9 }, () => trial(3))];
    const many = [trial(near), ...Array.from({ length: 63 }, () => trial(3))];
    expect(doneAt(few, BEST)).toBe(false);
    expect(doneAt(many, BEST)).toBe(true);
    expect(doneAt([trial(BEST / 0.98), ...Array.from({ length: 63 }, () => trial(3))], BEST)).toBe(false);
    // a failure recorded as fast never counts
    expect(doneAt([trial(0.1, 'wrong')], BEST)).toBe(false);
    expect(reachAt(many, BEST, 0.99, 100)).toBe(1);
  });
});
