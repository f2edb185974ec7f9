#!/usr/bin/env node
// Rewrites the generated reference in docs/rule-language.md from the registries (constraints,
// kernels) as `adopt rules show` prints it. Run after `npx tsc -p .`.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { REFERENCE_BEGIN, REFERENCE_END, ruleReference } from '../dist/match/rule-reference.js';

const path = fileURLToPath(new URL('../docs/rule-language.md', import.meta.url));
const doc = readFileSync(path, 'utf8');
const from = doc.indexOf(REFERENCE_BEGIN);
const to = doc.indexOf(REFERENCE_END);
if (from < 0 || to < from) {
  process.stderr.write(`${path}: the markers of the generated reference are missing\n`);
  process.exit(2);
}
writeFileSync(path, `${doc.slice(0, from + REFERENCE_BEGIN.length)}\n\n${ruleReference()}\n${doc.slice(to)}`);
