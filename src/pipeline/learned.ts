// What earlier `rewrite --verify` runs measured: a rule recorded as slower in a file is withheld
// there, unless the user named the rule explicitly.
import type { Site } from '../match/matcher.js';
import { readRecords, slowerRules, type SpeedRecord } from '../verify/records.js';
import type { Withhold } from './types.js';
import { MEASURED_ON } from './rule-verify.js';

export function withholdMeasuredSlower(named: Set<string>): Withhold {
  const learned = new Map<string, ReturnType<typeof slowerRules>>();
  let records: SpeedRecord[] | undefined; // read once, on the first site that needs them
  return (s: Site) => {
    if (named.has(s.rule)) return null;
    if (!learned.has(s.file)) learned.set(s.file, slowerRules(s.file, MEASURED_ON, (records ??= readRecords())));
    const r = learned.get(s.file)!.get(s.rule);
    return r ? `measured slower here by rewrite --verify (forward x${r.forward_ratio.toFixed(2)}, train x${r.train_ratio.toFixed(2)}); name it in --rules to use it anyway` : null;
  };
}
