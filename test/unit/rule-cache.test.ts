// Parsed rules kept between runs (src/match/rule-cache.ts): a stored parse is what a later load
// reads, it equals a fresh parse for every library rule, and a bad or tampered entry never gets
// past parsing or validation.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ruleCachePath } from '../../src/match/rule-cache.js';
import { defaultRulesDir, parseRules, ruleFilesIn, RuleError } from '../../src/match/rule.js';

const text = 'rule my_softmax\n  priority 45\n  match\n    y = softmax($x, ...)\n  where\n    last_dim(y)\n  rewrite expr y\n    guard "True"\n    "torch.softmax({x}, -1)"\n';

let saved: string | undefined;
const useFreshCache = () => { process.env.ADOPT_RULE_CACHE = mkdtempSync(join(tmpdir(), 'adopt-rule-cache-')); };
beforeEach(() => { saved = process.env.ADOPT_RULE_CACHE; useFreshCache(); });
afterEach(() => { if (saved === undefined) delete process.env.ADOPT_RULE_CACHE; else process.env.ADOPT_RULE_CACHE = saved; });

function stored(t: string): Record<string, unknown>[] {
  return JSON.parse(readFileSync(ruleCachePath(t)!, 'utf8')) as Record<string, unknown>[];
}

describe('rule cache', () => {
  it('a parse is stored, and the stored entry is what the next load reads', () => {
    const first = parseRules(text, 'my.rule');
    expect(existsSync(ruleCachePath(text)!)).toBe(true);
    const entry = stored(text);
    entry[0].title = 'read from the cache';
    writeFileSync(ruleCachePath(text)!, JSON.stringify(entry));
    const again = parseRules(text, 'other.rule');
    expect(again[0].title).toBe('read from the cache');
    expect(again[0].file).toBe('other.rule');
    expect({ ...again[0], title: first[0].title, file: first[0].file }).toStrictEqual(first[0]);
  });

  it('every library rule read back from the cache equals its fresh parse', () => {
    const files = ruleFilesIn([defaultRulesDir()]);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const t = readFileSync(f, 'utf8');
      useFreshCache();
      const fresh = parseRules(t, f);
      expect(existsSync(ruleCachePath(t)!), f).toBe(true);
      expect(parseRules(t, f), f).toStrictEqual(fresh);
    }
  });

  it('an entry that is not JSON is parsed again from the text, and replaced', () => {
    const fresh = parseRules(text, 'my.rule');
    writeFileSync(ruleCachePath(text)!, '{ not json');
    expect(parseRules(text, 'my.rule')).toStrictEqual(fresh);
  });

  it('a cached rule is still validated: a tampered entry fails at the rule file', () => {
    parseRules(text, 'my.rule');
    const entry = stored(text);
    entry[0].pattern = [];
    writeFileSync(ruleCachePath(text)!, JSON.stringify(entry));
    let error: unknown;
    try { parseRules(text, 'my.rule'); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(RuleError);
    expect((error as RuleError).message).toMatch(/^my\.rule:1:1: .*no match block/);
  });

  it('a text that does not parse is reported and nothing is stored', () => {
    const broken = 'rule broken\n  match\n    y = (\n';
    expect(() => parseRules(broken, 'broken.rule')).toThrow(/^broken\.rule:\d+:\d+: /);
    expect(existsSync(ruleCachePath(broken)!)).toBe(false);
  });
});
