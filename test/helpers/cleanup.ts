// Removes what tempProject made once a test file is done, so a run leaves no directories behind.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterAll } from 'vitest';
import { tempDirs } from './ir.js';

afterAll(() => {
  for (const dir of tempDirs.splice(0)) {
    // tests make files and directories read-only: give write permission back first
    spawnSync('chmod', ['-R', 'u+rwX', dir]);
    rmSync(dir, { recursive: true, force: true });
  }
});
