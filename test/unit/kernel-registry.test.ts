// Rules are checked against the kernel registry exported from native/adopt_kernels.
import { describe, expect, it } from 'vitest';
import { kernelRegistry } from '../../src/match/kernel-registry.js';
import { loadRules, parseRules } from '../../src/match/rule.js';

const rule = (extra: string, guard = "_adopt is not None and _adopt.enabled('softmax')", call = '_adopt.softmax') => `rule probe
  title "probe"
  match
    s = softmax($x, dim=-1)
  rewrite expr s
    guard "${guard}"
    "${call}({x}, dim=-1)"
${extra}`;

describe('kernel registry', () => {
  it('names every switch and function the library rules use', () => {
    const reg = kernelRegistry();
    expect(reg.switches).toContain('fused_optimizer');
    expect(reg.kernels.rms_norm.space.default).toBeTypeOf('object');
    expect(() => loadRules()).not.toThrow();
  });

  it('accepts a rule naming registry kernels', () => {
    expect(parseRules(rule('  kernel cpu native "adopt_kernels.softmax"\n'), 'ok.rule')).toHaveLength(1);
  });

  it('refuses a kernel adopt_kernels does not have', () => {
    expect(() => parseRules(rule('  kernel cpu native "adopt_kernels.softmaxx"\n'), 'k.rule')).toThrow(/k\.rule:8:3: error: rule probe: kernel "adopt_kernels\.softmaxx" is not a kernel/);
    // the package's constants and helpers are public names, not kernels: they are not offered as known ones
    expect(() => parseRules(rule('  kernel cpu native "adopt_kernels.softmaxx"\n'), 'k.rule')).toThrow(/\(known: (?![^)]*(AVAILABLE|KERNELS|__version__|enabled|gelu_kind|attention_supported))[^)]*softmax/);
  });

  it('refuses a helper of adopt_kernels named as a kernel', () => {
    expect(() => parseRules(rule('  kernel cpu native "adopt_kernels.enabled"\n'), 'k.rule')).toThrow(/kernel "adopt_kernels\.enabled" is not a kernel of adopt_kernels \(enabled is one of its helpers, not a kernel\)/);
  });

  it('refuses a guard switch that is not a kernel switch', () => {
    expect(() => parseRules(rule('', "_adopt is not None and _adopt.enabled('optimizer_kwargs')"), 's.rule')).toThrow(/guard switch 'optimizer_kwargs' is not a kernel switch/);
  });

  it('refuses a template calling a function adopt_kernels does not have', () => {
    expect(() => parseRules(rule('', "_adopt is not None and _adopt.enabled('softmax')", '_adopt.fast_softmax'), 't.rule')).toThrow(/'_adopt\.fast_softmax' is not a function/);
  });

  it('refuses a rewrite reading _adopt unless its first guard begins with _adopt is not None', () => {
    const unguarded = /u\.rule:5:3: error: rule probe: the rewrite uses _adopt, which is None where adopt_kernels is not installed: its first guard must begin with '_adopt is not None'/;
    expect(() => parseRules(rule('', "_adopt.enabled('softmax')"), 'u.rule')).toThrow(unguarded);
    expect(() => parseRules(rule('', "x is not None and _adopt is not None"), 'u.rule')).toThrow(unguarded);
    expect(() => parseRules(rule('', 'True'), 'u.rule')).toThrow(unguarded);
    expect(parseRules(rule('', '_adopt is not None'), 'u.rule')).toHaveLength(1);
    expect(parseRules(rule('', 'True', 'torch.softmax'), 'u.rule')).toHaveLength(1);
  });

  it('refuses tune lines, whose space now lives in the registry', () => {
    expect(() => parseRules(rule('  tune block in [64, 128]\n'), 'u.rule')).toThrow(/'tune' lines are no longer read/);
  });
});
