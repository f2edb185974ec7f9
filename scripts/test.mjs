#!/usr/bin/env node
// `npm test`: sets up what the suites need (Python side included), runs every suite, and ends
// with one line `N passed, N failed` summing them all. Exit status is non-zero if any failed.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
const totals = { passed: 0, failed: 0 };
const suites = [];

function step(name, cmd, args) {
  const r = run(cmd, args);
  if (r.status !== 0) {
    console.error(`adopt test: ${name} failed (exit ${r.status})`);
    totals.failed++;
    suites.push(`${name}: failed`);
    return false;
  }
  return true;
}

// --hf: transformers 4.35.0 into .cache/pydeps as well, for the HF harness's own tests
const setupOk = step('python setup', 'bash', [join(root, 'scripts/setup-python.sh'), '--hf']);
const buildOk = step('build', 'npx', ['tsc', '-p', '.']) && step('native build', 'node', [join(root, 'scripts/build-native.mjs')]);

if (buildOk) {
  const out = join(mkdtempSync(join(tmpdir(), 'adopt-vitest-')), 'results.json');
  run('npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${out}`]);
  if (existsSync(out)) {
    const r = JSON.parse(readFileSync(out, 'utf8'));
    // per tier (vitest.config.ts): the unit tier is test/unit/, the end-to-end tier the rest
    for (const [tier, inTier] of [['unit', (f) => f.includes('/test/unit/')], ['e2e', (f) => !f.includes('/test/unit/')]]) {
      const files = (r.testResults ?? []).filter((s) => inTier(s.name));
      const count = (status) => files.reduce((n, s) => n + (s.assertionResults ?? []).filter((a) => a.status === status).length, 0);
      // a test file that fails to load has no failed test of its own: count it once
      const broken = files.filter((s) => s.status === 'failed' && !s.assertionResults?.some((a) => a.status === 'failed')).length;
      const passed = count('passed'), failed = count('failed') + broken, skipped = count('pending') + count('skipped') + count('todo');
      const seconds = files.length ? (Math.max(...files.map((s) => s.endTime)) - Math.min(...files.map((s) => s.startTime))) / 1000 : 0;
      totals.passed += passed;
      totals.failed += failed;
      suites.push(`vitest ${tier}: ${passed} passed, ${failed} failed, ${skipped} skipped (not counted as passed), ${files.length} files, ${seconds.toFixed(0)} s`);
    }
  } else {
    totals.failed++;
    suites.push('vitest: no results');
  }
}

if (setupOk && existsSync(join(root, 'native', 'tests'))) {
  const py = process.env.ADOPT_PYTHON ?? '/usr/bin/python3';
  const xml = join(mkdtempSync(join(tmpdir(), 'adopt-pytest-')), 'junit.xml');
  run(py, ['-m', 'pytest', '-q', 'native/tests', `--junitxml=${xml}`], { env: { ...process.env, PYTHONPATH: [join(root, 'native'), join(root, '.cache', 'pydeps')].join(':') } });
  if (existsSync(xml)) {
    const x = readFileSync(xml, 'utf8');
    const attr = (n) => Number((new RegExp(`<testsuite[^>]*\\s${n}="(\\d+)"`).exec(x) ?? [])[1] ?? 0);
    const tests = attr('tests'), failures = attr('failures'), errors = attr('errors'), skipped = attr('skipped');
    // A skipped check is not a pass.
    totals.passed += tests - failures - errors - skipped;
    totals.failed += failures + errors;
    suites.push(`pytest: ${tests - failures - errors - skipped} passed, ${failures + errors} failed, ${skipped} skipped (not counted as passed)`);
  } else {
    totals.failed++;
    suites.push('pytest: no results');
  }
}

for (const s of suites) console.log(`  ${s}`);
console.log(`${totals.passed} passed, ${totals.failed} failed`);
process.exit(totals.failed ? 1 : 0);
