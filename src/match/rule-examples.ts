// Where a rule's example files are: paths in an `example` line are relative to the directory of
// the rule file itself, so a rule and its cases can be moved together.
import { dirname, resolve } from 'node:path';
import type { Rule } from './rule-ir.js';

export function exampleFile(rule: Rule, path: string): string {
  return resolve(dirname(rule.file), path);
}
