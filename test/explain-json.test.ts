import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../src/analysis/analyze.js';
import { adopt } from './helpers/cli.js';
import { modelFixtures } from './helpers/fixtures.js';

describe('explain --json', () => {
  it('prints the IR as one line of JSON that reads back to the program', () => {
    const [file] = modelFixtures();
    const r = adopt(['explain', '--json', file]);
    expect(r.code).toBe(0);
    expect(r.stdout.endsWith('\n')).toBe(true);
    expect(r.stdout.trimEnd().includes('\n')).toBe(false);
    const { program } = analyzePaths([file]);
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(JSON.stringify(program)));
    expect(program.files[0].modules.length).toBeGreaterThan(0);
  });
});
