// Setup of the unit tier (test/unit/): its tests run in this process only. Starting a process
// (the CLI, Python) throws here, so a test that needs one cannot slip into the fast tier; such a
// test belongs to the end-to-end tier (test/*.test.ts).
import { createRequire, syncBuiltinESMExports } from 'node:module';

const childProcess = createRequire(import.meta.url)('node:child_process') as Record<string, unknown>;
for (const name of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork']) {
  childProcess[name] = () => {
    throw new Error(`the unit tier runs in process: ${name}() is not allowed here (a test that starts a process belongs in test/, the end-to-end tier)`);
  };
}
// the ES module bindings of node:child_process follow the CommonJS object only when told
syncBuiltinESMExports();
