import { basename } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import { parseProgram } from '../../src/dsl/parse.js';
import { printProgram } from '../../src/dsl/print.js';
import { modelFixtures } from '../helpers/fixtures.js';

const plain = (x: unknown) => JSON.parse(JSON.stringify(x));

describe('DSL round trip: parse(print(ir)) equals ir', () => {
  const fixtures = modelFixtures();
  it('the comparison catches a change: a location or a default edited in the text parses to another program', () => {
    const { program } = analyzePaths([fixtures[0]]);
    const text = printProgram(program);
    const moved = text.replace(/@(\d+):/, (_m, line: string) => `@${Number(line) + 1}:`);
    const redefaulted = text.replace(/defaults (\S+)=(\d+)/, (_m, key: string, n: string) => `defaults ${key}=${Number(n) + 1}`);
    for (const edited of [moved, redefaulted]) {
      expect(edited).not.toBe(text);
      expect(plain(parseProgram(edited, basename(fixtures[0])))).not.toEqual(plain(program));
    }
  });
  for (const f of fixtures) {
    it(basename(f), () => {
      const { program } = analyzePaths([f]);
      expect(program.files.length).toBeGreaterThan(0);
      expect(program.files.some((x) => x.modules.length > 0)).toBe(true);
      const text = printProgram(program);
      const back = parseProgram(text, basename(f));
      expect(plain(back)).toEqual(plain(program));
      // and printing is stable
      expect(printProgram(back)).toBe(text);
    });
  }

  it('reports a DSL syntax error with line and column', () => {
    const text = 'adopt-dsl 1 root "/x"\nfile "a.py" module a\n  module a.M(torch.nn.Module) @1:1-2:1#0-10\n    def forward(self) @1:1-2:1#0-10\n      %1 = softmax(x, dim=-1 @3:1-3:4#0-3\n';
    expect(() => parseProgram(text, 'bad.dsl')).toThrow(/bad\.dsl:5:\d+: error: cannot parse the DSL/);
  });
});
