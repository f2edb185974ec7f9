import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './cli.js';

export const modelsDir = join(repoRoot, 'fixtures', 'models');

/** Every model fixture: single files and package directories. */
export function modelFixtures(): string[] {
  return readdirSync(modelsDir)
    .filter((f) => f.endsWith('.py') || statSync(join(modelsDir, f)).isDirectory())
    .map((f) => join(modelsDir, f))
    .sort();
}
