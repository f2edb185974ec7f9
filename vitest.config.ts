import { defineConfig } from 'vitest/config';

// Two tiers, both run by `npm test`:
// - unit (test/unit/): in process only, starting a process throws there (test/helpers/in-process.ts);
//   `npm run test:unit` runs it alone in seconds;
// - e2e (test/*.test.ts): the CLI as a user runs it and the numerical checks in torch, every Python
//   launch a fork of one warm interpreter (test/helpers/python-server.ts).
// An e2e test that verifies a package in torch takes ~40 s alone: its limit leaves room for a
// shared machine. Files run two at a time: most of an e2e test's time is a child process working while the
// test's own process waits, so two workers keep both cores of a small machine busy.
export default defineConfig({
  test: {
    testTimeout: 60000,
    hookTimeout: 120000,
    pool: 'forks',
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], setupFiles: ['test/helpers/cleanup.ts', 'test/helpers/in-process.ts'] } },
      { extends: true, test: { name: 'e2e', include: ['test/*.test.ts'], testTimeout: 180000, setupFiles: ['test/helpers/cleanup.ts'], globalSetup: ['test/helpers/python-server.ts'] } },
    ],
  },
});
