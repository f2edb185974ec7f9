// A module rewritten with --tune loads the schedule file beside it: the lines are part of the
// import block's edit (so the diff shows them), and importing the module loads the file.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { unifiedDiff } from '../src/synth/diff.js';
import { SCHEDULE_FILE, withScheduleLoading } from '../src/tune/schedule-file.js';
import { runPython } from '../src/verify/python.js';
import { repoRoot } from './helpers/cli.js';

describe('schedule loading in the rewritten module', () => {
  const run = runRewrite([join(repoRoot, 'fixtures/models/llama_style.py')], {});
  const f = run.files[0];
  const tuned = withScheduleLoading(f);

  it('goes right below the import block, in the edits as in the text', () => {
    expect(tuned.rewritten).toMatch(/\n {4}_adopt = None\nif _adopt is not None: {2}# adopt: schedules tuned .*\n {4}_adopt\.use_schedules\(__file__\)\n/);
    expect(tuned.rewritten.replace(/if _adopt is not None: {2}# adopt: schedules tuned.*\n.*use_schedules\(__file__\)\n/, '')).toBe(f.rewritten);
    expect(unifiedDiff(tuned.path, tuned.original, tuned.edits)).toContain('+    _adopt.use_schedules(__file__)');
    // applied twice, it is not added twice
    expect(withScheduleLoading(tuned).rewritten).toBe(tuned.rewritten);
  });

  it('loads the schedule file beside the module when the module is imported', () => {
    const dir = mkdtempSync(join(tmpdir(), 'adopt-sched-'));
    writeFileSync(join(dir, 'modeling_llama.py'), tuned.rewritten);
    writeFileSync(join(dir, SCHEDULE_FILE), JSON.stringify({ format: 'adopt-schedules/1', target: {}, entries: [] }));
    const probe = 'import importlib.util, sys\nspec = importlib.util.spec_from_file_location("m", sys.argv[1])\nm = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(m)\nfrom adopt_kernels import schedules\nprint(sorted(schedules._loaded_paths))';
    const r = runPython(['-c', probe, join(dir, 'modeling_llama.py')]);
    if (!r.ok) throw new Error(r.error);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(join(dir, SCHEDULE_FILE));
  });
});
