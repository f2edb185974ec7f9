// Sizes in `adopt kernels status` read as the dispatcher's own messages write them.
import { describe, expect, it } from 'vitest';
import { sizeText } from '../../src/cli/kernels.js';

describe('sizeText', () => {
  it('writes bytes in the largest binary unit they reach, to two decimals', () => {
    expect(sizeText(1.5 * 2 ** 20)).toBe('1.5 MiB');
    expect(sizeText(64 * 1024)).toBe('64 KiB');
    expect(sizeText(3 * 2 ** 30)).toBe('3 GiB');
    expect(sizeText(1000)).toBe('1000 B');
    expect(sizeText(2 ** 20 + 1)).toBe('1 MiB');
  });

  it('says a floor of 0 as any size', () => {
    expect(sizeText(0)).toBe('any size');
  });
});
