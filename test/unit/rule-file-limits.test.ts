// Rule files the loader must refuse at once, at their place and in the rule writer's words: too
// large, a line too long, brackets nested too deep (the parser's time, memory and stack), not
// UTF-8, holding no rule; `rewrite init` with or without a name. And what the user is told to run,
// and what the documentation shows, works (the torch lookup of `rules check`: test/rules-cli.test.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { updateCommand } from '../../src/cli/rules-test.js';
import { kernelRegistry } from '../../src/match/kernel-registry.js';
import { exampleFile } from '../../src/match/rule-examples.js';
import { REFERENCE_BEGIN, ruleReference } from '../../src/match/rule-reference.js';
import { loadRuleFile, parseRules, RuleError } from '../../src/match/rule.js';
import { MAX_RULE_FILE_BYTES } from '../../src/match/rule-parse.js';
import { repoRoot } from '../helpers/cli.js';
import { tempProject } from '../helpers/ir.js';

function errorOf(f: () => unknown): RuleError {
  try { f(); } catch (e) { if (e instanceof RuleError) return e; throw e; }
  throw new Error('no error');
}

const silu = (title = 't', mul = 'mul($x, s)') => `rule my_silu
  title "${title}"
  match
    s = sigmoid($x)
    y = ${mul}
  rewrite expr y
    "torch.nn.functional.silu({x})"
  kernel cpu torch "torch.nn.functional.silu"
  example "before.py" "after.py" model "SiluMLP" shapes (2, 5, 16)
`;

/** Milliseconds `f` takes. */
function timed(f: () => void): number {
  const t = Date.now();
  f();
  return Date.now() - t;
}

describe('rule files past what a rule needs', () => {
  it('a file over the size limit is refused at once, without being parsed', () => {
    const dir = tempProject({ 'big.rule': silu('a'.repeat(MAX_RULE_FILE_BYTES)) });
    let e!: RuleError;
    expect(timed(() => { e = errorOf(() => loadRuleFile(join(dir, 'big.rule'))); })).toBeLessThan(2000);
    expect(e.message).toMatch(/big\.rule:1:1: error: the rule file is \d+ KiB, over the 256 KiB a rule file may hold/);
  });

  it('a line over the length limit is refused at its line', () => {
    let e!: RuleError;
    expect(timed(() => { e = errorOf(() => parseRules(silu('a'.repeat(100_000)), 'long.rule')); })).toBeLessThan(2000);
    expect(e.message).toMatch(/^long\.rule:2:4001: error: line 2 is 100010 characters long, over the 4000/);
  });

  it('brackets nested too deep are refused at the bracket, not with a stack overflow', () => {
    const deep = silu('t', `mul($x, ${'('.repeat(1000)}s${')'.repeat(1000)})`);
    expect(errorOf(() => parseRules(deep, 'deep.rule')).message).toMatch(/^deep\.rule:5:80: error: brackets nested more than 64 deep/);
    // brackets in a string do not count
    expect(parseRules(silu('('.repeat(200)), 'ok.rule')).toHaveLength(1);
  });

  it('an unclosed bracket in a trailing comment counts for nothing, in any number of rules', () => {
    const many = Array.from({ length: 70 }, (_, i) => silu().replace('rule my_silu', `rule my_silu${i}`).replace('  title "t"', '  title "t"  // note (a')).join('\n');
    expect(parseRules(many, 'many.rule')).toHaveLength(70);
  });
});

describe('rule files that are not UTF-8', () => {
  const load = (bytes: Buffer) => {
    const dir = tempProject({ 'r.rule': bytes });
    return () => loadRuleFile(join(dir, 'r.rule'));
  };

  it('Latin-1: the first byte that is not UTF-8, at its line and column', () => {
    const latin1 = Buffer.from(silu().replace('my_silu', 'my_silu_\u00e9'), 'latin1');
    expect(errorOf(load(latin1)).message).toMatch(/^.*r\.rule:1:14: error: the file is not UTF-8: byte 0xE9 at line 1, column 14 is not valid UTF-8 \(Latin-1 or another encoding\?\)/);
  });

  it('UTF-16, with or without a byte-order mark', () => {
    const bom = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(silu(), 'utf16le')]);
    expect(errorOf(load(bom)).message).toMatch(/r\.rule:1:1: error: the file is not UTF-8: it begins with a UTF-16 byte-order mark/);
    expect(errorOf(load(Buffer.from(silu(), 'utf16le'))).message).toMatch(/r\.rule:1:2: error: the file is not UTF-8 text: it holds a NUL byte/);
  });

  it('a UTF-8 byte-order mark is skipped', () => {
    const rules = load(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(silu(), 'utf8')]))();
    expect(rules.map((r) => r.name)).toEqual(['my_silu']);
    expect(parseRules(`\uFEFF${silu()}`, 'b.rule')).toHaveLength(1);
  });
});

describe('messages at lines that exist', () => {
  it('an empty or comment-only file holds no rule, said at its first line', () => {
    for (const text of ['', '\n', '// just a comment\n', '\n\n// a\n\n']) {
      expect(errorOf(() => parseRules(text, 'e.rule')).message).toMatch(/^e\.rule:1:1: error: the file holds no rule/);
    }
  });

  it('a file that ends too early is reported at the end of its last line', () => {
    expect(errorOf(() => parseRules('rule b\n  match\n', 'f.rule')).message).toMatch(/^f\.rule:2:8: error: cannot parse the rule: expected an indented block/);
    expect(errorOf(() => parseRules('rule b\n  match\n    y = softmax($x)\n  rewrite expr y\n\n\n', 'f.rule')).message).toMatch(/^f\.rule:4:17: /);
  });

  it('rewrite init, with or without a name, is refused with the reason', () => {
    for (const kind of ['init', 'init y']) {
      const text = silu().replace('rewrite expr y', `rewrite ${kind}`).replace('    "torch', '    guard "True"\n    "torch');
      expect(errorOf(() => parseRules(text, 'i.rule')).message).toMatch(/^i\.rule:6:3: error: 'rewrite init' is not supported \(adopt never applied it\)/);
    }
  });
});

describe('what the user is told to run', () => {
  it('rules test\'s hint to accept the new output names the rules the command ran with', () => {
    const [r] = parseRules(silu(), '/x/my rules/silu.rule');
    expect(updateCommand(r, {})).toBe('adopt rules test --update my_silu');
    expect(updateCommand(r, { rules: './silu.rule' })).toBe('adopt rules test --update --rules ./silu.rule my_silu');
    expect(updateCommand(r, { rules: "my rules/it's.rule", builtinRules: false })).toBe("adopt rules test --update --rules 'my rules/it'\\''s.rule' --no-builtin-rules my_silu");
  });
});

describe('the documentation', () => {
  const doc = readFileSync(join(repoRoot, 'docs', 'rule-language.md'), 'utf8');

  it('its first example is the library\'s softmax rule, and its example files exist beside it', () => {
    const block = /```\n([\s\S]*?)```/.exec(doc.slice(0, doc.indexOf(REFERENCE_BEGIN)))![1];
    const file = join(repoRoot, 'rules', 'softmax', 'softmax.rule');
    const [r] = parseRules(block, file);
    expect(r.examples.length).toBeGreaterThan(0);
    for (const ex of r.examples) for (const p of [ex.before, ex.after]) expect(() => readFileSync(exampleFile(r, p)), p).not.toThrow();
  });

  it('the generated reference lists every function a kernel line may name', () => {
    const reference = ruleReference();
    for (const f of kernelRegistry().kernel_functions) expect(reference, f).toContain(`\`${f}`);
    // and so does the document, which holds the reference as generated
    for (const f of kernelRegistry().kernel_functions) expect(doc, f).toContain(`\`${f}`);
  });
});

