// The data the pipeline's stages pass forward, in one place so that no stage imports another for
// a type.
import type { NearMiss, Site } from '../match/matcher.js';
import type { FileResult, SiteResult } from '../synth/synthesize.js';
import type { ClassResult } from '../verify/file.js';

export type Stage = 'analyse' | 'match' | 'synthesize' | 'tune' | 'verify' | 'emit';

/** A stage starting (`seconds` absent) or ending, for progress on long runs. */
export interface StageEvent { stage: Stage; files: number; seconds?: number }

/** A reason to leave a site alone, or null to rewrite it. */
export type Withhold = (s: Site) => string | null;

export interface RuleVerdict {
  rule: string;
  verdict: 'kept' | 'mismatch' | 'not_runnable' | 'not_exercised' | 'slower';
  forward_ratio?: number;
  train_ratio?: number;
  detail?: string;
}

/** A class as `rewrite --verify` reports it: `not_exercised` where it matched only because the
 *  rewrite's own code never ran in it (the harness's `exercised: false`). */
export type ReportedClass = Omit<ClassResult, 'status'> & { status: ClassResult['status'] | 'not_exercised' };

export interface FileVerification {
  file: string;
  rules: RuleVerdict[];
  /** The final rewrite of the file (all kept rules together), per class. */
  classes: ReportedClass[];
  status: 'verified' | 'mismatch' | 'not_runnable' | 'unchanged';
  error?: string;
}

/** What synthesis (and verification, when asked for) made of the plan. */
export interface RewriteRun { files: FileResult[]; sites: SiteResult[]; nearMisses: NearMiss[]; verification?: FileVerification[] }
