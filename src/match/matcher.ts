// Subsequence matching of rule patterns on the DSL: pattern lines are matched along dataflow
// (not textual adjacency), every match is reported, commutative ops and optional lines are
// honoured, and `where` constraints are checked. Failed near-matches keep their reason.
import type { Expr, FileIR, Op, Program } from '../dsl/ir.js';
import { isTorchScript, sameExpr } from '../analysis/lower.js';
import { checkConstraint } from './constraints.js';
import { partialMatch, requiredLines, type NearMiss } from './why-not.js';
import { PlaceTable, type NearMissTable } from './near-miss-table.js';
import { attrOf, ctorUnknown, exclusive, reaches, usersOf, viewOf, type MethodView } from './method.js';
import { attributeChains, sequentialChains } from './chains.js';
import { subclassBuildsOtherwise } from './inheritance.js';
import { ABSENT_IF_NONE } from '../analysis/optional-add.js';
import { KW_RENAMES, POSITIONAL_TO_KW } from '../analysis/canon.js';
import { looksIn, type PatArg, type PatOp, type PatVal, type Rule } from './rule-ir.js';
import { PLAIN_OP, setupViewsFor } from './setup-views.js';
import { isTorchNnClass, namesakeOfTorch } from './callee-names.js';

export interface Site {
  rule: string;
  priority: number;
  /** The file holding the matched code (a helper's file when it was inlined from there). */
  file: string;
  /** Class (a module, or another class's setup code; '' for a function of the file) and method
   *  the match was found in. */
  owner: string;
  method: string;
  ops: Record<string, Op | null>;
  values: Record<string, Expr>;
  bindings: Record<string, Expr>;
  lines: [number, number];
  view: MethodView;
}

export type { NearMiss } from './why-not.js';
export type { State } from './state.js';
import type { State } from './state.js';

export interface MatchResult { sites: Site[]; nearMisses: NearMiss[] }

const COMMUTATIVE = new Set(['add', 'mul']);

/** With `partial`, a rule whose first line occurs nowhere in a method is also looked for from
 *  its other lines, for --why-not (see why-not.ts). */
export function matchProgram(program: Program, rules: Rule[], opts: { partial?: boolean } = {}): MatchResult {
  const sites = new Map<string, Site>();
  const misses: NearMissTable = new PlaceTable<NearMiss>();
  // the functions lowered on their own, by qualified name: model code for every rule, setup code
  // only for the rules that look there (to the others, a helper of setup code is a helper)
  const lowered = new Set<string>();
  const setupLowered = new Set<string>();
  const constructed = new Set<Site>();
  const analysed = new Set(program.files.map((f) => f.path));
  const ruleOpts = { ...opts, analysed };
  const modelRules = rules.filter((r) => looksIn(r, 'model'));
  const setupRules = rules.filter((r) => looksIn(r, 'setup'));
  const modelIndex = anchorIndex(modelRules);
  const setupIndex = anchorIndex(setupRules);
  const setupViews = setupViewsFor(setupRules);
  const match = (view: MethodView, scoped: Rule[], index: AnchorIndex) => {
    // TorchScript-compiled code cannot call the kernels' Python wrappers.
    if (view.method.decorators?.some(isTorchScript)) return;
    const anchors = anchorsOf(view, index);
    for (const [i, rule] of scoped.entries()) {
      const r = matchRule(rule, view, { ...ruleOpts, anchors: anchors[i] });
      for (const s of r.sites) {
        const key = siteKey(s) + callKey(s);
        const prev = sites.get(key);
        // The same code reached through inlining is one site: keep it where it is defined; an
        // attribute's Sequential found through forward is that site, not its chain from __init__.
        if (!prev || depth(s) < depth(prev) || (constructed.has(prev) && depth(s) === depth(prev))) sites.set(key, s);
      }
      for (const n of r.nearMisses) misses.set(n, n);
    }
  };
  for (const file of program.files) {
    const views: MethodView[] = [];
    for (const m of file.modules) for (const meth of m.methods) views.push(viewOf(file, meth, m));
    for (const fn of file.functions) views.push(viewOf(file, fn));
    // an nn.Sequential built in code (a downsample branch made in a helper and handed to a
    // block) is matched as the chain of its elements, wherever it ends up being called
    const chains = [...views.flatMap(sequentialChains), ...file.modules.flatMap((m) => attributeChains(file, m))];
    for (const chain of chains) {
      for (const rule of modelRules) for (const s of matchRule(rule, chain).sites) { constructed.add(s); sites.set(siteKey(s), sites.get(siteKey(s)) ?? s); }
    }
    for (const v of views) lowered.add(v.module ? `${v.module.qualname}.${v.method.name}` : `${file.module}.${v.method.name}`);
    for (const view of views) match(view, modelRules, modelIndex);
    // setup code is lowered only where a rule will read it
    if (!setupRules.length) continue;
    for (const { view, qual } of setupViews(file)) {
      setupLowered.add(qual);
      match(view, setupRules, setupIndex);
    }
  }
  const setupRuleNames = new Set(setupRules.map((r) => r.name));
  // A match found only inside an inlined helper that does not match on its own depends on one
  // caller's arguments (e.g. `dim` passed in): rewriting the helper would be wrong for the others.
  const found: Site[] = [];
  for (const s of sites.values()) {
    const helper = innermostVia(s);
    if (helper && (lowered.has(helper) || (setupRuleNames.has(s.rule) && setupLowered.has(helper))) && depth(s) > 0) {
      // one call of a helper that matches on its own: the helper's site covers it
      if (callKey(s) && sites.has(siteKey(s))) continue;
      const op = firstOp(s)!;
      misses.set({ rule: s.rule, file: s.file, line: op.span.from.line, col: op.span.from.col }, {
        rule: s.rule, file: s.file, line: op.span.from.line, col: op.span.from.col, owner: s.owner, matched: 1, of: 1,
        reason: `matches only with the arguments ${s.owner ? `${s.owner}.` : ''}${s.method} passes to ${helper.split('.').pop()}; the helper on its own does not match`,
      });
      continue;
    }
    found.push(s);
  }
  // a subclass that inherits the matched method but builds a submodule the site reads otherwise
  // (`self.attend = nn.Softmax(dim=1)` over the base's dim=-1) would run the rewrite too
  for (let i = found.length - 1; i >= 0; i--) {
    const why = subclassBuildsOtherwise(program, found[i].view.module, found[i].view.method.name, Object.values(found[i].ops));
    if (!why) continue;
    const s = found[i];
    const op = firstOp(s)!;
    misses.set({ rule: s.rule, file: s.file, line: op.span.from.line, col: op.span.from.col }, {
      rule: s.rule, file: s.file, line: op.span.from.line, col: op.span.from.col, owner: s.owner, matched: 1, of: 1, reason: why,
    });
    found.splice(i, 1);
  }
  // a Sequential that forward calls through its attribute is already a site there
  const spanOfSite = (s: Site) => Object.values(s.ops).filter((o): o is Op => !!o).map((o) => o.span);
  const within = (a: { start: number; end: number }, b: { start: number; end: number }) => a.start >= b.start && a.end <= b.end;
  for (let i = found.length - 1; i >= 0; i--) {
    const s = found[i];
    if (!constructed.has(s)) continue;
    const [span] = spanOfSite(s);
    const covered = found.some((o) => o !== s && !constructed.has(o) && o.rule === s.rule && o.file === s.file && spanOfSite(o).some((x) => (x.file ?? '') === (span.file ?? '') && within(span, x)));
    if (covered) found.splice(i, 1);
  }
  // A near miss that is a site elsewhere (another path, another inlining) is not a miss.
  const siteAnchors = new PlaceTable<true>();
  for (const s of found) siteAnchors.set({ rule: s.rule, file: s.file, line: firstOp(s)?.span.from.line, col: firstOp(s)?.span.from.col }, true);
  return { sites: found, nearMisses: misses.values().filter((n) => !siteAnchors.has(n)) };
}

function firstOp(s: Site): Op | undefined {
  return Object.values(s.ops).find((o): o is Op => !!o);
}

/** The helper all matched ops were inlined from, when they share one. */
function innermostVia(s: Site): string | undefined {
  const inner = new Set(Object.values(s.ops).filter((o): o is Op => !!o).map((o) => o.via?.[o.via.length - 1] ?? ''));
  return inner.size === 1 ? [...inner][0] || undefined : undefined;
}

function depth(s: Site): number {
  return Math.max(0, ...Object.values(s.ops).map((o) => o?.via?.length ?? 0));
}

/** For a match wholly inside helpers of other files, the call it is reached through: each call
 *  (q's and k's `apply_rotary_emb`) is a site of its own. */
function callKey(s: Site): string {
  const real = Object.values(s.ops).filter((o): o is Op => !!o);
  if (real.some((o) => o.span.file === s.file)) return '';
  const calls = new Set(real.map((o) => (o.span.file && o.via?.length && o.site ? o.site.start : -1)));
  return calls.has(-1) ? '' : `@${[...calls].sort((a, b) => a - b).join(',')}`;
}

export function siteKey(s: Site): string {
  // the element index tells apart the elements of one nn.Sequential, which share its span; a
  // Sequential built by a factory function is one site however many attributes it builds
  const spans = Object.values(s.ops).filter((o): o is Op => !!o).map((o) => `${o.span.file ?? s.view.file.path}:${o.span.start}-${o.span.end}:${/\[\d+\]$/.test(o.callee) ? o.callee.replace(/^.*(\[\d+\])$/, '$1') : o.callee}`).sort();
  return `${s.rule}|${spans.join('|')}`;
}

/** Which rules an op can start, for a rule list: an op of kind `op` can match only a first line
 *  that names it (looked up by name: most ops are such, and so are most first lines); other ops
 *  are tested against every rule's first line. */
interface AnchorIndex { rules: number; byName: Map<string, number[]>; forms: PatOp[][] }

function anchorIndex(rules: Rule[]): AnchorIndex {
  const byName = new Map<string, number[]>();
  const forms = rules.map((r) => formsOf(r.pattern[0]));
  forms.forEach((fs, i) => {
    for (const name of new Set(fs.flatMap((f) => f.callees.filter((c) => PLAIN_OP.test(c))))) {
      const list = byName.get(name);
      if (list) list.push(i); else byName.set(name, [i]);
    }
  });
  return { rules: rules.length, byName, forms };
}

/** For each rule of the index, the ops of the view that can start its match, in the view's order. */
function anchorsOf(view: MethodView, index: AnchorIndex): Op[][] {
  const out: Op[][] = Array.from({ length: index.rules }, () => []);
  for (const op of view.ops) {
    if (op.kind === 'op') {
      for (const i of index.byName.get(op.callee) ?? []) out[i].push(op);
    } else {
      for (let i = 0; i < index.rules; i++) if (anchorMatches(index.forms[i], op)) out[i].push(op);
    }
  }
  return out;
}

/** How many sites one anchor may start, and how many searches it may take to find them. */
const MAX_SITES_PER_ANCHOR = 6;
const MAX_ATTEMPTS_PER_ANCHOR = 16;
/** How many searches the chain of last ops may take (the first, then three with one more banned). */
const MAX_CHAIN_SEARCHES = 4;

/** `anchors`: the ops of the view that can start the rule's match, when already known. */
export function matchRule(rule: Rule, view: MethodView, opts: { partial?: boolean; analysed?: Set<string>; anchors?: Op[] } = {}): MatchResult {
  const sites: Site[] = [];
  const nearMisses: NearMiss[] = [];
  const anchorForms = formsOf(rule.pattern[0]);
  const known = opts.anchors;
  let anchored = false;
  // A failed attempt leaves its state as it found it (every write is undone), so one empty state
  // serves every anchor that does not match: most anchors (every Linear against every Linear+X
  // rule) do not.
  let spare: Growing | undefined;
  for (const op of known ?? view.ops) {
    if (!known && !anchorMatches(anchorForms, op)) continue;
    anchored = true;
    const trace: Trace = { why: [], depth: 0, matched: 0, constraint: false, constraintFailures: 0 };
    // One anchor can start several sites (a value feeding both branches of an if): after each
    // match, its last op is banned and the search repeats. Where k and v are projected in each
    // clause of an if/elif chain, the site wanted shares only its first op with the first match:
    // where a match has an op under an `if`, each other op of a required line (and each op of a
    // pair that never runs together) is banned in turn too, after the chain of last ops. A site
    // found so must bind the same pattern lines as the first site, so that banning an op never
    // turns an optional line into an absent one.
    const queue: { banned: Set<number>; chain: boolean }[] = [{ banned: new Set(), chain: true }];
    const tried = new Set<string>(['']);
    const keys = new Set<string>();
    let firstBound: string | undefined;
    let apart: string | undefined;
    let found = 0;
    for (let attempts = 0; queue.length && found < MAX_SITES_PER_ANCHOR && attempts < MAX_ATTEMPTS_PER_ANCHOR; attempts++) {
      const { banned, chain } = queue.shift()!;
      const st: Growing = banned.size === 0 && spare ? spare : { vals: new Map(), ops: new Map(), metas: new Map(), used: new Set(banned), forms: new Map(), log: [] };
      spare = undefined;
      if (!extend(rule, view, 0, st, op, trace)) {
        if (banned.size === 0) spare = st;
        continue;
      }
      const real = [...st.ops.values()].filter((o): o is Op => !!o);
      // ops on different branches of one `if` never run together: not a site (k from one clause
      // of a chain, v from another), though banning one of them may lead to one
      const conflict = exclusivePair(view, real);
      const bound = rule.pattern.filter((p) => st.ops.get(p.name)).map((p) => p.name).join(',');
      if (conflict) apart ??= `every match puts ops on different branches of one if (lines ${conflict[0].span.from.line} and ${conflict[1].span.from.line}), which never run together`;
      else {
        firstBound ??= bound;
        const site = chain || bound === firstBound ? toSite(rule, view, st, opts.analysed) : undefined;
        const key = site && siteKey(site);
        if (site && key && !keys.has(key)) { keys.add(key); sites.push(site); found++; }
      }
      const last = real[real.length - 1];
      const branched = !!conflict || real.some((o) => (view.paths.get(o.id)?.length ?? 0) > 0);
      const required = () => rule.pattern.filter((p) => !p.optional).map((p) => st.ops.get(p.name)).filter((o): o is Op => !!o).reverse();
      const others = branched ? [...required(), ...(conflict ?? [])].filter((o) => o.id !== op.id && o.id !== last.id) : [];
      for (const o of last.id === op.id ? [] : [last, ...others]) {
        const next = new Set(banned).add(o.id);
        const id = [...next].sort((a, b) => a - b).join(',');
        if (tried.has(id)) continue;
        tried.add(id);
        if (chain && o === last) { if (next.size < MAX_CHAIN_SEARCHES) queue.unshift({ banned: next, chain: true }); } else queue.push({ banned: next, chain: false });
      }
    }
    if (!found) {
      nearMisses.push({ rule: rule.name, file: op.span.file ?? view.file.path, line: op.span.from.line, col: op.span.from.col, owner: view.module?.name ?? view.owner ?? '', reason: apart ?? trace.why[0] ?? 'the pattern does not continue here', matched: trace.matched, of: requiredLines(rule), ...(trace.constraint ? { constraint: true } : {}) });
    }
  }
  if (!anchored && opts.partial) {
    const partial = partialMatch(rule, view, calleeMatches);
    if (partial) nearMisses.push(partial);
  }
  return { sites, nearMisses };
}

/** Two ops of a match on different branches of one `if`, if there are such. */
function exclusivePair(view: MethodView, ops: Op[]): [Op, Op] | undefined {
  for (let i = 0; i < ops.length; i++) for (let j = i + 1; j < ops.length; j++) if (exclusive(view, ops[i].id, ops[j].id)) return [ops[i], ops[j]];
  return undefined;
}

/** `analysed`: the files of the program; a helper in one of them keeps its sites where it is. */
function toSite(rule: Rule, view: MethodView, st: State, analysed?: Set<string>): Site {
  const ops = Object.fromEntries(st.ops);
  const real = [...st.ops.values()].filter((o): o is Op => !!o);
  // ops of a helper inlined into matched code of this method are where the helper is called
  const mixed = real.some((o) => !o.via?.length);
  // a match wholly inside helpers of other files (an imported apply_rotary_emb) is where this
  // method calls them: that call is what a rewrite replaces, in the file being rewritten
  const atCalls = !mixed && real.every((o) => o.span.file && o.site && !analysed?.has(o.span.file));
  const placed = (mixed || atCalls) && real.every((o) => !o.via?.length || o.site);
  const at = (o: Op) => (placed && o.via?.length && o.site ? o.site : o.span);
  const lines: [number, number] = [Math.min(...real.map((o) => at(o).from.line)), Math.max(...real.map((o) => at(o).to.line))];
  const files = placed ? new Set([view.file.path]) : new Set(real.map((o) => o.span.file ?? view.file.path));
  return {
    rule: rule.name, priority: rule.priority, file: [...files][0], owner: view.module?.name ?? view.owner ?? '', method: view.method.name,
    ops, values: Object.fromEntries(st.vals), bindings: Object.fromEntries(st.metas), lines, view,
  };
}

/** The attempts from one anchor: why they stopped (the first reason is reported), how far they
 *  got (the most required lines bound at once), and whether a complete match failed only on a
 *  constraint (`constraintFailures` of those reasons lead the list). */
interface Trace { why: string[]; depth: number; matched: number; constraint: boolean; constraintFailures: number }

/** Whether an op can start a match of a pattern line (any of its forms). */
function anchorMatches(forms: PatOp[], op: Op): boolean {
  for (const f of forms) if (calleeMatches(f, op)) return true;
  return false;
}

function extend(rule: Rule, view: MethodView, i: number, st: Growing, anchor: Op | undefined, trace: Trace): boolean {
  const why = trace.why;
  if (i >= trace.depth) {
    trace.depth = i;
    let bound = 0;
    for (let j = 0; j < i; j++) if (!rule.pattern[j].optional && st.ops.get(rule.pattern[j].name)) bound++;
    trace.matched = Math.max(trace.matched, bound);
  }
  if (i === rule.pattern.length) {
    // the match's result (the line `rewrite expr` or `rewrite callee` names, else the last line,
    // which a `rewrite stmts` template assigns): without it there is nothing to rewrite, and
    // banning that optional op to look for another site would find this one again, less that line
    const target = rule.rewrite?.kind === 'expr' || rule.rewrite?.kind === 'callee' ? rule.pattern.find((p) => p.name === rule.rewrite!.target) : undefined;
    const result = target ?? rule.pattern[i - 1];
    if (result.optional && st.ops.get(result.name) === null) {
      if (why.length === 0) why.push(`no '${result.name} = ${result.callees.join('|')}(...)' follows in the dataflow: the pattern's last line is optional, but it is the match's result`);
      return false;
    }
    for (const c of rule.where) {
      const failure = checkConstraint(c, st, view, rule.pattern);
      if (failure) trace.constraint = true;
      // a constraint that fails on a complete match says more than a line that did not follow;
      // among those, the first tried (the arguments in their written order) comes first
      if (failure) { why.splice(trace.constraintFailures, 0, failure); trace.constraintFailures++; return false; }
    }
    return true;
  }
  const p = rule.pattern[i];
  const candidates = anchor ? [anchor] : candidatesFor(p, st, view);
  const forms = formsOf(p);
  for (const op of candidates) {
    if (st.used.has(op.id) && op !== anchor) continue;
    for (const [k, form] of forms.entries()) {
      if (!calleeMatches(form, op)) continue;
      for (const args of argOrders(op)) {
        const saved = st.log.length;
        const failure = bindOp(form, op, args, st, view);
        if (!failure) {
          if (k) put(st, st.forms, p.name, k);
          if (extend(rule, view, i + 1, st, undefined, trace)) return true;
        } else if (i === 0 || why.length === 0) why.push(failure);
        undo(st, saved);
      }
    }
  }
  if (p.optional) {
    const through = passThrough(p, st);
    if (through) {
      const saved = st.log.length;
      put(st, st.vals, p.name, through);
      put(st, st.ops, p.name, null);
      if (extend(rule, view, i + 1, st, undefined, trace)) return true;
      undo(st, saved);
    }
  }
  if (i > 0 && why.length === 0) why.push(`no '${p.name} = ${p.callees.join('|')}(...)' follows in the dataflow${detour(rule, view, i, st)}`);
  return false;
}

/** Ops that can continue a partial match: users of a value the pattern line refers to. */
function candidatesFor(p: PatOp, st: State, view: MethodView): Op[] {
  for (const pv of argValues(p)) {
    const v = pv.k === 'ref' ? st.vals.get(pv.name) : pv.k === 'meta' ? st.metas.get(pv.name) : undefined;
    if (v?.k === 'ssa') return usersOf(view, v.id);
    if (v?.k === 'name') return view.nameUses.get(v.path) ?? [];
  }
  return view.ops;
}

const formsOfLine = new WeakMap<PatOp, PatOp[]>();
/** A pattern line and each of its `or` forms as a line of its own, made once per rule line. */
function formsOf(p: PatOp): PatOp[] {
  let forms = formsOfLine.get(p);
  if (!forms) formsOfLine.set(p, (forms = [p, ...(p.alts ?? []).map((f) => ({ ...p, ...f, alts: undefined }))]));
  return forms;
}

const argValuesOf = new WeakMap<PatOp, PatVal[]>();
/** The values a pattern line's arguments (of all its forms) name, listed once per rule line. */
function argValues(p: PatOp): PatVal[] {
  let vals = argValuesOf.get(p);
  if (!vals) argValuesOf.set(p, (vals = [...p.args, ...(p.alts ?? []).flatMap((f) => f.args)].flatMap((a) => (a.val?.k === 'tuple' ? a.val.items : a.val ? [a.val] : []))));
  return vals;
}

function argOrders(op: Op): Expr[][] {
  if (op.kind === 'op' && COMMUTATIVE.has(op.callee) && op.args.length === 2) return [op.args, [op.args[1], op.args[0]]];
  return [op.args];
}

/** An optional line that is absent passes its first data input through. */
function passThrough(p: PatOp, st: State): Expr | undefined {
  const pos = p.args.filter((a) => !a.kw && a.val);
  const ref = pos.find((a) => a.val!.k === 'ref');
  if (ref) return st.vals.get((ref.val as { name: string }).name);
  for (const a of pos) if (a.val!.k === 'meta' && st.metas.has(a.val!.name)) return st.metas.get(a.val!.name);
  return undefined;
}

// Callee alternatives compiled once into tests: every op of every method is tried against every
// rule's anchor, and every candidate against its pattern line.
const calleeTests = new Map<string, (op: Op) => boolean>();

/** A line's callee tests; a canonical op (most ops) can match only an alternative spelled as
 *  that op's own name, so those are a set. */
interface LineTests { ops: Set<string>; tests: ((op: Op) => boolean)[] }
const lineTests = new WeakMap<PatOp, LineTests>();

export function calleeMatches(p: PatOp, op: Op): boolean {
  let line = lineTests.get(p);
  if (!line) {
    const tests = p.callees.map((alt) => {
      let test = calleeTests.get(alt);
      if (!test) calleeTests.set(alt, (test = calleeTest(alt)));
      return test;
    });
    lineTests.set(p, (line = { ops: new Set(p.callees.filter((alt) => PLAIN_OP.test(alt))), tests }));
  }
  if (op.kind === 'op') return line.ops.has(op.callee);
  for (const test of line.tests) if (test(op)) return true;
  return false;
}

function calleeTest(alt: string): (op: Op) => boolean {
  if (alt.includes('*') && !alt.endsWith('[*]')) {
    // a glob over class names, e.g. *Gelu* (the rewrite's guard checks the module at run time)
    // classes only: a function named *gelu* (quick_gelu) is not a GELU module
    const re = new RegExp(`^${alt.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i');
    return (op) => op.kind === 'module' && (op.type ?? []).some((t) => re.test(t.split('.').pop()!));
  }
  if (alt.endsWith('[*]')) {
    const base = alt.slice(0, -3);
    return (op) => op.kind === 'module' && (op.type ?? []).some((t) => t === base || t.includes(`.${base}[`) || t.startsWith(`${base}[`));
  }
  if (PLAIN_OP.test(alt)) {
    // a canonical op, or a module built by a factory of that name (get_activation("gelu"))
    const suffix = `.${alt}`;
    return (op) => (op.kind === 'op' && op.callee === alt) || (op.kind === 'module' && (op.type ?? []).some((t) => t.endsWith(suffix)));
  }
  const last = alt.split('.').pop()!;
  const isQual = alt.includes('.');
  const tail = isQual ? `.${alt}` : `.${last}`;
  // a project's own class named like torch's (`class Linear(nn.Module)`, a low-rank layer) is not
  // the torch layer the rule means: its kernel would compute torch's layer from other weights
  const torchsOnly = !isQual && isTorchNnClass(alt);
  // `nn.Conv2d(c, c, 3)` builds the layer and computes nothing: the line means the layer called
  const ctor = isTorchNnClass(last) ? `torch.nn.${last}` : undefined;
  const hit = (t: string) => t === alt || (t.endsWith(tail) && (!torchsOnly || t.startsWith('torch.')));
  return (op) => {
    // a callee the analysis could not resolve (`self.loss_function`) matches its own spelling
    if (op.kind === 'unknown') return isQual && op.callee === alt;
    if (op.kind === 'module') return (op.type ?? []).some(hit);
    if (op.kind === 'call') return hit(op.callee) && op.callee !== ctor;
    return false;
  };
}

function bindOp(p: PatOp, op: Op, args: Expr[], st: Growing, view: MethodView): string | undefined {
  // `x if m is None else x + m`: only a line that says it takes more (`add(s, $mask, ...)`) binds
  // it, as a kernel that reads None as nothing does; a residual of None would not be nothing
  if (op.kw.some(([k]) => k === ABSENT_IF_NONE) && !p.args.some((a) => a.rest)) return `${op.callee} at line ${op.span.from.line} adds its operand only where it is not None`;
  const failure = bindArgs(op.kind === 'op' ? canonicalArgs(p.args, op.callee) : p.args, args, op.kw, st, `${op.callee}`, view);
  if (failure) return failure;
  if (p.ctor) {
    const attr = attrOf(view, op);
    if (!attr || attr.value.k !== 'call') return ctorUnknown(view, op) ?? `the constructor of ${op.callee} is not known statically`;
    const f = bindArgs(p.ctor, attr.value.args, attr.value.kw, st, attr.value.callee, view);
    if (f) return f;
  }
  put(st, st.ops, p.name, op);
  put(st, st.vals, p.name, { k: 'ssa', id: op.id });
  if (!st.used.has(op.id)) { st.log.push(st.used, op.id, false, undefined); st.used.add(op.id); }
  return undefined;
}

/** A pattern's arguments as the analysis writes the op's: what follows the input tensor by
 *  position becomes the keyword it is (`mean(p, -1, keepdim=True)` reads `mean(p, dim=-1,
 *  keepdim=True)`), so a pattern spelled the way code is written matches that code. */
function canonicalArgs(pargs: PatArg[], callee: string): PatArg[] {
  const sig = POSITIONAL_TO_KW[callee];
  if (!sig || pargs.some((a) => a.rest && !a.kw)) return pargs;
  let i = 0;
  return pargs.map((a) => {
    if (a.kw || a.rest) return a;
    const name = i > 0 ? sig[i - 1] : undefined;
    i++;
    return name ? { ...a, kw: KW_RENAMES[callee]?.[name] ?? name } : a;
  });
}

function bindArgs(pargs: PatArg[], args: Expr[], kw: [string, Expr][], st: Growing, what: string, view: MethodView): string | undefined {
  const positional = pargs.filter((a) => !a.kw && !a.rest);
  const rest = pargs.some((a) => a.rest);
  if (positional.length > args.length) return `${what} has ${args.length} positional argument(s), the pattern needs ${positional.length}`;
  if (!rest && positional.length < args.length) return `${what} has ${args.length} positional arguments, the pattern allows ${positional.length}`;
  // a keyword the pattern does not name changes what the call computes (`softmax(x, dim=-1,
  // dtype=torch.float32)`): without `...` the rewrite would drop it
  const extra = rest ? undefined : kw.find(([k]) => k !== ABSENT_IF_NONE && !pargs.some((a) => a.kw === k));
  if (extra) return `${what} passes ${extra[0]}=, which the pattern does not name (\`...\` allows further arguments)`;
  for (let i = 0; i < positional.length; i++) {
    const f = bindVal(positional[i].val!, args[i], st, view);
    // a value the rule names is shown as found (`pow: argument 2 is 3 where the rule needs 2`)
    if (f) return `${what}: argument ${i + 1}${f.startsWith('where') ? ` is ${exprBrief(args[i])}` : ''} ${f}`;
  }
  for (const a of pargs.filter((x) => x.kw)) {
    const e = kw.find(([k]) => k === a.kw)?.[1];
    if (!e) {
      if (a.val?.k === 'any') continue;
      return `${what} has no ${a.kw}=`;
    }
    const f = bindVal(a.val!, e, st, view);
    if (f) return `${what}: ${a.kw}=${exprBrief(e)} ${f}`;
  }
  return undefined;
}

function bindVal(pv: PatVal, e: Expr, st: Growing, view: MethodView): string | undefined {
  switch (pv.k) {
    case 'any': return undefined;
    case 'const': return e.k === 'const' && e.v === pv.v ? undefined : `where the rule needs ${JSON.stringify(pv.v)}`;
    case 'name': return e.k === 'name' && e.path === pv.path ? undefined : `where the rule needs ${pv.path}`;
    case 'ref': {
      const v = st.vals.get(pv.name);
      return v && reaches(view, v, e) ? undefined : `is not the value of '${pv.name}'`;
    }
    case 'meta': {
      const v = st.metas.get(pv.name);
      if (!v) { put(st, st.metas, pv.name, e); return undefined; }
      return sameExpr(v, e) ? undefined : `differs from $${pv.name}`;
    }
    case 'tuple': {
      if ((e.k !== 'tuple' && e.k !== 'list') || e.items.length !== pv.items.length) return `is not a ${pv.items.length}-tuple`;
      for (let i = 0; i < pv.items.length; i++) {
        const f = bindVal(pv.items[i], e.items[i], st, view);
        if (f) return `item ${i + 1} ${f}`;
      }
      return undefined;
    }
  }
}

function exprBrief(e: Expr): string {
  if (e.k === 'const') return e.raw ?? JSON.stringify(e.v);
  if (e.k === 'name') return e.path;
  if (e.k === 'ssa') return `%${e.id}`;
  return e.k;
}

/** A match while it grows, with a log of its writes: a failed attempt is undone by replaying the
 *  log backwards to a mark, instead of copying the state before every attempt (the matcher tries
 *  every candidate op of every pattern line, and copies dominated matching on large files).
 *  Each write is four entries: the map or set, the key, whether the key was there, its old value. */
interface Growing extends State { log: unknown[] }

function put<K, V>(st: Growing, m: Map<K, V>, k: K, v: V): void {
  st.log.push(m, k, m.has(k), m.get(k));
  m.set(k, v);
}

function undo(st: Growing, mark: number): void {
  const log = st.log;
  while (log.length > mark) {
    const old = log.pop();
    const had = log.pop() as boolean;
    const k = log.pop();
    const target = log.pop() as Map<unknown, unknown> | Set<unknown>;
    if (target instanceof Set) target.delete(k);
    else if (had) target.set(k, old);
    else target.delete(k);
  }
}

export type { FileIR };

/** Where the value matched last goes instead of the missing line: `: it goes through tanh in
 *  helper soft_cap (line 12) first`, so a user sees which step the rule does not take. */
function detour(rule: Rule, view: MethodView, i: number, st: State): string {
  const last = rule.pattern.slice(0, i).reverse().map((q) => st.vals.get(q.name)).find((v) => v?.k === 'ssa');
  if (last?.k !== 'ssa') return '';
  const next = usersOf(view, last.id).find((o) => o.kind === 'op' || o.kind === 'module');
  if (!next) return '';
  const helper = next.via?.length && next.site ? ` in helper ${next.via[0].split('.').pop()} (called at line ${next.site.from.line})` : ` at line ${next.span.from.line}`;
  const own = next.kind === 'module' && rule.pattern[i] ? namesakeOfTorch(rule.pattern[i], next) : undefined;
  if (own) return `: ${next.callee}${helper} is ${own.type}, a class of the project's own, not torch.nn.${own.name}`;
  return `: it goes through ${next.callee}${helper} first`;
}

