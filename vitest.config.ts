import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60000,
    hookTimeout: 120000,
    pool: 'forks',
    setupFiles: ['test/helpers/cleanup.ts'],
    globalSetup: ['test/helpers/python-server.ts'],
  },
});
