import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash, type CliResult } from './helpers/cli.js';
import { modelsDir } from './helpers/fixtures.js';
import { tempProject } from './helpers/ir.js';
import { countColor, readPng } from './helpers/png.js';

/** A small corpus: two fixtures (their label markers in them) and a file with nothing to rewrite. */
function corpus(): string {
  const dir = tempProject({ 'plain.py': 'import torch\n\n\ndef f(x):\n    return x + 1\n' });
  for (const f of ['bert_encoder.py', 'resnet_style.py']) copyFileSync(join(modelsDir, f), join(dir, f));
  return dir;
}

// One verified bench run of the corpus, shared by the checks of its output and of its report.
let run: { dir: string; out: string; result: CliResult };
beforeAll(() => {
  const dir = corpus();
  const out = join(dir, 'results');
  run = { dir, out, result: adopt(['bench', dir, '--verify', '--out', out]) };
});

const CHROMIUM = ['chromium-headless-shell', 'chromium', 'chromium-browser'].find((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);

describe('adopt bench DIR', () => {
  it('rewrites, scores against the label markers in the files, verifies, and writes JSON and a report', () => {
    const { out, result: r } = run;
    expect(r.code, r.stderr).toBe(0);
    const last = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(last).toMatchObject({ files: 3, rewritten_files: 2, verified: 2, mismatch: 0 });
    expect(last.labelled_recall).toBeGreaterThan(0.5);
    const j = JSON.parse(readFileSync(join(out, 'bench.json'), 'utf8'));
    expect(j.files.find((f: { model: string }) => f.model === 'plain.py').status).toBe('not_rewritten');
    expect(j.files.find((f: { model: string }) => f.model === 'bert_encoder.py')).toMatchObject({ status: 'verified' });
    // the report says, per verified model, which of original and rewrite is slower
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toMatch(/<th>speed \(rewritten \/ original\)<\/th>/);
    expect(html).toMatch(/<td class="speed (slower|faster|same)">(rewritten slower|original slower|about the same) \(forward x\d+\.\d\d, train x\d+\.\d\d\)<\/td>/);
    expect(html).toMatch(/Models by verification status/);
  });

  it('bad usage: both a directory and --hf, a missing directory, a directory with no Python', () => {
    const empty = tempProject({ 'notes.txt': 'nothing here\n' });
    for (const args of [['bench', empty, '--hf'], ['bench', join(empty, 'missing')], ['bench', empty], ['bench', '--hf', 'latest']]) {
      const r = adopt(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(looksLikeCrash(r.stderr)).toBe(false);
    }
    expect(adopt(['bench', empty]).stderr).toMatch(/no Python files/);
  });

  it('a malformed label marker: its file:line, exit 2, and nothing written', () => {
    const dir = tempProject({ 'm.py': 'import torch\n\n\ndef f(x):\n    return x.softmax(-1)  # site softmax begins: never closed\n' });
    const out = join(dir, 'results');
    const r = adopt(['bench', dir, '--out', out]);
    expect(r.code).toBe(2);
    expect(looksLikeCrash(r.stderr)).toBe(false);
    expect(r.stderr).toMatch(/m\.py:5: 'site softmax begins' is never closed/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('the HTML report', () => {
  it('renders offline in headless Chromium: bars for sites, verification status and tool time', () => {
    expect(CHROMIUM, 'headless Chromium is installed by scripts/setup-python.sh').toBeDefined();
    const { dir, out, result } = run;
    expect(result.code, result.stderr).toBe(0);
    const png = join(dir, 'report.png');
    const shot = spawnSync(CHROMIUM!, ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1000,1400', `--screenshot=${png}`, `file://${join(out, 'report.html')}`], { encoding: 'utf8', timeout: 60_000 });
    expect(existsSync(png), shot.stderr).toBe(true);
    const img = readPng(png);
    expect([img.width, img.height]).toEqual([1000, 1400]);
    // the plots are drawn: green bars (rewritten sites, verified models) and the tool-time bars;
    // no model is a mismatch, so no red bar (the colour is the mismatch status's alone)
    expect(countColor(img, '#22bb77')).toBeGreaterThan(1500);
    expect(countColor(img, '#6677aa')).toBeGreaterThan(300);
    expect(countColor(img, '#cc8844')).toBeGreaterThan(100);
    expect(countColor(img, '#dd3333')).toBe(0);
    // and the page is not blank: most of it is white, but far from all
    const white = countColor(img, '#ffffff', 2) / (img.width * img.height);
    expect(white).toBeGreaterThan(0.5);
    expect(white).toBeLessThan(0.98);
  });
});
