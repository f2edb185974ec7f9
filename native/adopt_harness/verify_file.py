"""File run (`adopt verify ORIGINAL REWRITTEN` without --shape, `adopt rewrite --verify`): every
model class asked for (by default every nn.Module class the two files define) is built tiny from
the size table in both files with the same seed, the rewrite loaded strictly with the original's
state dict, fed inputs the input finder picks, and compared side by side (sidebyside.py) in eval
and train mode under the dtype's policy. Verified classes are then timed: forward (eval, no grad)
and a training step of both, interleaved, after warm-up. A class whose constructor has on/off
switches (parameters defaulting to True or False) is compared again with each flipped in turn,
where the original builds and runs so: a rewrite right only for the default's branch is a mismatch.

A transformers modeling module (one defining a *PreTrainedModel) has its model classes checked
as `bench --hf --verify` checks them (hf_verify.verify_modules: the bare model from the family's
shrunk default config, inputs from its forward signature), and its other classes as above: so a
modeling file of any transformers version verifies the same way as HF-199's.

A forward taking `labels=` or `targets=` fed token ids is compared with labels too (a loss runs only
with them). Each class says whether the rewrite's own code ran in it (`exercised`, exercised.py).
With --kernels, a class that matched in float64 is compared again in float32 (`kernel_pass`), the
dtype the compiled kernels take.

Several rewritten variants of one original can be checked in one run (`--variant NAME=PATH`), so
a caller can time each rule's rewrite on its own and learn which ones make the model slower.

Writes a progress line per class and one result line (schema.py: FileResult).
"""
import argparse
import contextlib
import copy
import inspect
import json
import os
import statistics
import time
import traceback
import types

import torch

from adopt_harness import hf_verify
from adopt_harness.build import MAX_PLAN_PARAMETERS, config_of, constructor_kwargs, init_signature, load, module_classes, parameter_count, size_plans
from adopt_harness.compare import TORCH_DTYPES, policy_for, tensors
from adopt_harness.counting import FastPathCounter
from adopt_harness.deadline import Timeout, deadline, extend
from adopt_harness.dropout import no_dropout
from adopt_harness.exercised import probe_for
from adopt_harness.inputs import find_inputs, label_keyword
from adopt_harness.optimizer_pass import optimizer_problems
from adopt_harness.protocol import Channel
from adopt_harness.sidebyside import RewrittenRaised, compare_rewrite, load_strict, reference
from adopt_harness.text import clip, first_line

TIMEOUT_S = int(os.environ.get("ADOPT_VERIFY_TIMEOUT", "60"))


def elapsed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _forward(m, inputs):
    with torch.no_grad():
        m(*inputs)


def _step(m, inputs):
    m.train()
    no_dropout(m)
    loss = sum(t.float().sum() for t in tensors(m(*inputs)))
    loss.backward()
    m.zero_grad(set_to_none=True)


def timings(a, b, inputs, repeats):
    out = {}
    for m in (a, b):
        m.eval()  # the training step sets train mode itself
    for kind, fn in (("forward", _forward), ("train", _step)):
        for _ in range(2):  # warm-up
            fn(a, inputs)
            fn(b, inputs)
        # whether the rewrite's compiled kernels run at these sizes at all: below their size floors
        # every call runs the code it replaces, and the ratio measures the guards alone (counted
        # here, outside the timed runs, which the counter's wrappers would slow)
        with FastPathCounter() as counter:
            fn(b, inputs)
        compiled = counter.result()["compiled_calls"]
        ta, tb = [], []
        for _ in range(repeats):  # interleaved, so drift hits both alike
            ta.append(elapsed(lambda: fn(a, inputs)))
            tb.append(elapsed(lambda: fn(b, inputs)))
        oa, ob = statistics.median(ta), statistics.median(tb)
        # the lower quartile of the interleaved pairs' ratios: a rewrite is called slower only when
        # three pairs in four show it slower, never on one noisy median
        pairs = sorted(y / x for x, y in zip(ta, tb) if x > 0)
        best = pairs[len(pairs) // 4] if pairs else None
        out[kind] = {"original_s": oa, "rewritten_s": ob, "ratio": ob / oa if oa > 0 else None, "ratio_best": best, "compiled_calls": max(compiled, 0)}
    return out


def _in_dtype(x, dtype):
    """An input in a floating dtype (a tuple of tensors, such as a rotary table, element by element)."""
    if isinstance(x, tuple):
        return tuple(_in_dtype(t, dtype) for t in x)
    return x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def _float32(x):
    return _in_dtype(x, torch.float32)


def _lazy_reference(model, inputs):
    """The original's runs in float64 on `inputs` (args, kwargs), made on the first call only:
    a comparison reads them only for a tensor over its tolerance."""
    runs = []

    def get():
        if not runs:
            args, kwargs = inputs
            runs.append(reference(model, ([_in_dtype(x, torch.float64) for x in args], {k: _in_dtype(v, torch.float64) for k, v in kwargs.items()})))
        return runs[0]
    return get


def _sizes_of(kwargs):
    """The sizes a class built without a config was given (hidden_size=32), read by the input
    finder as it reads a config's: a LayerNorm without weights has no other width to go by."""
    ints = {k: v for k, v in kwargs.items() if isinstance(v, int) and not isinstance(v, bool)}
    return types.SimpleNamespace(**ints) if ints else None


def _build_pair(original, rewritten, name, overrides, dtype, sizes=None):
    """(original model, rewritten model, config) or a mismatch result for the rewrite; `sizes`, a
    plan of build.size_plans (None: the size table's)."""
    kwargs = constructor_kwargs(original, name, overrides, sizes=sizes)
    torch.manual_seed(0)
    a = getattr(original, name)(**kwargs)
    if sizes is not None and parameter_count(a) > MAX_PLAN_PARAMETERS:
        raise RuntimeError(f"{parameter_count(a)} weights at these sizes, more than the {MAX_PLAN_PARAMETERS} a check builds")
    try:
        kwargs_b = constructor_kwargs(rewritten, name, overrides, sizes=sizes)
        torch.manual_seed(0)
        b = getattr(rewritten, name)(**kwargs_b)
    except Timeout:
        raise
    except Exception as e:  # the original builds: a rewrite that does not is wrong
        return None, {"status": "mismatch", "problems": [f"the rewritten class raises when built: {first_line(e, 300)}"]}
    wrong = load_strict(b, a.state_dict())
    if wrong:
        return None, {"status": "mismatch", "problems": [wrong], "strict_load": False}
    return (a.to(dtype), b.to(dtype), config_of(kwargs) or _sizes_of(kwargs)), None


def _input_sets(a, args):
    """(tag, inputs) to compare on: the inputs found, and the same with labels where the forward
    takes them (the ids themselves: every position a valid class, none ignored)."""
    sets = [("", (list(args), {}))]
    key = label_keyword(a, args[0]) if args else None
    if key:
        sets.append((f"with {key}", (list(args), {key: args[0].clone()})))
    return sets


def _compare_sets(a, b, sets, policy, exact_model=None):
    """Every input set compared; (problems, summary, notes). A set the original itself cannot run
    (labels of a shape its loss refuses) is left out with a note; the first set always runs.
    `exact_model`, the original in float64 with the same weights, gives each comparison the
    original's results in float64 (compare_rewrite's `exact`)."""
    problems, notes, summary = [], [], {}
    for i, (tag, inputs) in enumerate(sets):
        if i:
            try:
                refs = reference(a, inputs)
            except Timeout:
                raise
            except Exception as e:
                notes.append(f"not compared {tag}: the original raises: {first_line(e, 160)}")
                continue
        else:
            refs = reference(a, inputs)
        prefix = f"{tag}: " if tag else ""
        exact = _lazy_reference(exact_model, inputs) if exact_model is not None else None
        try:
            cmp, more, _ = compare_rewrite(b, inputs, refs, policy, original=a, exact=exact)
        except RewrittenRaised as e:
            problems.append(prefix + str(e))
            continue
        problems += [prefix + p for p in cmp.problems]
        notes += [prefix + n for n in more]
        for k, v in cmp.summary().items():
            summary[k] = max(summary.get(k, v), v)
    return problems, summary, notes


def _kernel_pass(a, b, sets):
    """The pair again in float32, the dtype the compiled kernels take (float64 runs the torch code
    they replace), at any size (compare_rewrite lifts the size floor) and under float32's
    tolerance: the float64 pass checks what the rewrite computes, this one the kernels."""
    a.float()
    b.float()
    # the original again in float64 from the float32 weights: what each float32 result is off by
    exact_model = copy.deepcopy(a).double()
    sets32 = [(tag, ([_float32(x) for x in args], kwargs)) for tag, (args, kwargs) in sets]
    with FastPathCounter() as counter:
        problems, summary, notes = _compare_sets(a, b, sets32, policy_for("fp32"), exact_model)
        if not problems:
            problems += [f"optimizer: {p}" for p in optimizer_problems(a, b, sets32[0][1], policy_for("fp32"))[0]]
    return {"status": "mismatch" if problems else "verified", "dtype": "fp32", "problems": problems[:10], **summary, **counter.result(),
            **({"notes": notes} if notes else {})}


MAX_SWITCHES = 4


def switches(module, name, overrides):
    """The constructor's on/off switches (parameters with a True or False default that the caller
    did not set), each with its other value: an `if` in __init__ or forward that one decides can
    build or run other code than the default does, which a rewrite must also get right."""
    out = []
    for p in list(init_signature(getattr(module, name)).parameters.values())[1:]:
        if isinstance(p.default, bool) and p.name not in overrides and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            out.append((p.name, not p.default))
    return out[:MAX_SWITCHES]


def _switched_problems(original, rewritten, name, overrides, dtype, sizes=None, shape=None):
    """The pair built with each switch flipped in turn and compared as the default was: problems,
    each prefixed with the switch; a setting the original itself cannot build or run is left out
    (notes say so)."""
    problems, notes = [], []
    for key, value in switches(original, name, overrides):
        tag = f"with {key}={value}"
        try:
            # each setting has a budget of its own, so that checking more of the class never turns
            # the default's verdict into a time-out; what is left of the class gets a fresh one after
            extend(TIMEOUT_S)
            problems_here, notes_here = _switched_pair(original, rewritten, name, {**overrides, key: value}, dtype, tag, sizes, shape)
        except Timeout:
            notes.append(f"not compared {tag} or later switches: out of time ({TIMEOUT_S} s)")
            break
        finally:
            extend(TIMEOUT_S)
        problems += problems_here
        notes += notes_here
    return problems, notes


def _switched_pair(original, rewritten, name, overrides, dtype, tag, sizes=None, shape=None):
    """The pair built with `overrides` (one switch flipped), compared as the default was."""
    try:
        built, failed = _build_pair(original, rewritten, name, overrides, dtype, sizes)
    except Timeout:
        raise
    except Exception as e:  # the original does not build so: nothing to hold the rewrite to
        return [], [f"not compared {tag}: the original raises when built: {first_line(e, 160)}"]
    if failed:
        return [f"{tag}: {p}" for p in failed["problems"]], []
    a, b, config = built
    try:
        args, _ = find_inputs(a, config, dtype, shape)
        # a copy runs it: a forward in training mode moves running statistics, which the
        # comparison below must find as the rewrite's twin has them
        reference(copy.deepcopy(a), (list(args), {}))
    except Timeout:
        raise
    except Exception as e:
        return [], [f"not compared {tag}: the original raises: {first_line(e, 160)}"]
    found, _, more = _compare_sets(a, b, _input_sets(a, args), policy_for(dtype))
    return [f"{tag}: {p}" for p in found], [f"{tag}: {n}" for n in more]


def _built_and_fed(original, rewritten, name, overrides, dtype, lines, shape=None):
    """The pair built and the inputs the original accepts, from the first size plan that gives
    both (build.size_plans: the size table's, else the class's own widths scaled together, else its
    own defaults), in `dtype`, else in float32 where the original does not run in float64 (its
    own code fixes float32: `torch.arange(n, dtype=torch.float32)` in a timestep embedding).
    A dict with a, b, args, label, dtype, sizes and notes; or a result (a mismatch of the rewrite,
    which stands whatever the sizes). `shape`, the caller's input shape for this class, is the
    only first input tried. Raises the first plan's error where none fits."""
    first = None
    dtypes = [dtype] + ([torch.float32] if dtype == torch.float64 else [])
    for described, sizes in size_plans(original, name, overrides):
        failed_in = None
        for dt in dtypes:
            try:
                with lines:
                    built, failed = _build_pair(original, rewritten, name, overrides, dt, sizes)
                if failed:
                    return failed
                a, b, config = built
                args, label = find_inputs(a, config, dt, shape)
            except Timeout:
                raise
            except Exception as e:  # the next plan, or float32, may build and run
                first, failed_in = first or e, failed_in or e
                continue
            notes = []
            if sizes is not None:
                notes.append(f"built at {described}: at the size table's sizes, {_why(first)}")
            if dt != dtype:
                notes.append(f"compared in float32: the original does not run in float64 ({_why(failed_in)})")
            return {"a": a, "b": b, "args": args, "label": label, "dtype": dt, "sizes": sizes, "notes": notes, "fell_back": dt != dtype}
    raise first


def _why(e):
    return _message(e, 300) if isinstance(e, RuntimeError) else first_line(e, 300)


def _message(e, limit):
    """An error's first line, clipped at a word: the harness's own reasons are one line, and
    torch's first line says what went wrong (the lines after it are a C++ traceback)."""
    lines = str(e).strip().splitlines()
    return clip(lines[0], limit) if lines else type(e).__name__


def check_class(original, rewritten, name, overrides, dtype, repeats, probe=None, kernels=False, shape=None):
    """One class compared in `dtype` (with labels too where its forward takes them); with
    `kernels`, a float64 pass that matched is followed by a float32 pass that runs the compiled
    kernels. `probe` (the rewrite's own code, see exercised.py) decides `exercised`; `shape`, the
    caller's, is the shape of its first input."""
    if not hasattr(rewritten, name):
        return {"class": name, "status": "mismatch", "problems": [f"the rewritten file has no class {name}"]}
    lines = probe() if probe else contextlib.nullcontext()
    fed = _built_and_fed(original, rewritten, name, overrides, dtype, lines, shape)
    if "status" in fed:
        return {"class": name, **fed}
    a, b, args, label, dtype, sizes = (fed[k] for k in ("a", "b", "args", "label", "dtype", "sizes"))
    notes = fed["notes"]
    sets = _input_sets(a, args)
    with FastPathCounter() as counter, lines:
        problems, summary, more = _compare_sets(a, b, sets, policy_for(dtype))
    notes += more
    counts = counter.result()
    # an optimizer the model builds for itself shows a rewrite of it only when it steps
    steps = 0
    if not problems:
        with lines:
            found, steps = optimizer_problems(a, b, sets[0][1], policy_for(dtype))
        problems += [f"optimizer: {p}" for p in found]
    if not problems:
        # the same class with each on/off constructor switch flipped: a setting read from one
        # branch of __init__ that another instance does not share shows here
        switched, more = _switched_problems(original, rewritten, name, overrides, dtype, sizes, shape)
        problems += switched
        notes += more
    result = {"class": name, "status": "mismatch" if problems else "verified", "problems": problems[:10],
              **({"dtype": "fp32"} if fed["fell_back"] else {}),
              "inputs": label + "".join(f", and {tag}" for tag, _ in sets[1:]), "strict_load": True, **summary, **counts,
              **({"optimizer_steps": steps} if steps else {})}
    if probe:
        result["exercised"] = lines.exercised(counts["fast_path_calls"])
    if kernels and dtype == torch.float64 and not problems:
        result["kernel_pass"] = k = _kernel_pass(a, b, sets)
        result["compiled_calls"] = counts["compiled_calls"] + k["compiled_calls"]
        result["compiled_kernels"] = {n: counts["compiled_kernels"].get(n, 0) + k["compiled_kernels"].get(n, 0) for n in sorted({*counts["compiled_kernels"], *k["compiled_kernels"]})}
        if k["status"] == "mismatch":
            problems = [f"float32 (compiled kernels): {p}" for p in k["problems"]]
            result.update(status="mismatch", problems=problems[:10])
    if notes:
        result["notes"] = notes
    if repeats and not problems:
        # timed in float32, the dtype models run in
        result["timings"] = timings(a.float(), b.float(), [_float32(x) for x in args], repeats)
    return result


# characters of a reason: the input finder's (one clipped first line per try) fits whole
REASON_CHARS = 1000


def not_runnable(name, e):
    if isinstance(e, SystemExit):
        return {"class": name, "status": "not_runnable", "reason": f"the model calls sys.exit({e.code!r})"}
    if isinstance(e, (Timeout, RuntimeError)):
        return {"class": name, "status": "not_runnable", "reason": _message(e, REASON_CHARS)}
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    return {"class": name, "status": "not_runnable", "reason": f"{first_line(e, 300)}{where}"}


def transformers_models(module):
    """The module's transformers model classes (those with a config_class, which take keyword
    inputs the size table cannot guess), when it defines a *PreTrainedModel; else none."""
    if not any(n.endswith("PreTrainedModel") and getattr(o, "config_class", None) for n, o in vars(module).items() if inspect.isclass(o)):
        return set()
    return {n for n in module_classes(module) if getattr(getattr(module, n), "config_class", None) is not None}


def check_model(original, rewritten, label):
    """A transformers modeling module checked as hf_verify checks HF-199: its bare model built from
    the family's shrunk default config, fed from its forward signature."""
    started = time.time()
    try:
        with deadline(TIMEOUT_S):
            r = hf_verify.verify_modules(label, original, rewritten)
    except (Timeout, hf_verify.NotRunnable) as e:
        r = {"status": "not_runnable", "reason": clip(" ".join(str(e).split()), REASON_CHARS)}
    except Exception as e:  # the model code failed where the harness could not tell whose fault it is
        r = not_runnable("", e)
    r.pop("timings", None)  # timed per class below, never per model
    r.update({"model": label, "inputs": "the model's forward signature (transformers config)", "seconds": round(time.time() - started, 3)})
    r.setdefault("class", label)
    return r


def fast_path_api():
    try:
        from adopt_kernels import registry
    except ImportError:
        return ()
    return frozenset(registry.fast_path_api())


def importing_fails(e):
    """Why importing a file failed, in one line; sys.exit at import is named as such."""
    if isinstance(e, SystemExit):
        return f"it calls sys.exit({e.code!r}) when imported"
    return f"{type(e).__name__}: {e}"


def check_variant(args, channel, original, names, vname, path, dtype, overrides, shapes=None):
    try:
        rewritten = load(path, False, package_from=None if args.own_package else args.original)
    except (Exception, SystemExit) as e:
        return [{"variant": vname, "status": "mismatch", "problems": [f"the rewritten file does not import: {importing_fails(e)}"]}]
    probe = probe_for(args.original, path, fast_path_api(), args.own_package)
    shapes = shapes or {}
    results = []
    models = transformers_models(original) & set(names)
    if models:
        r = check_model(original, rewritten, os.path.splitext(os.path.basename(args.original))[0])
        r["variant"] = vname
        channel.progress(model=r["class"], status=r["status"], message=vname)
        results.append(r)
    for name in [n for n in names if n not in models]:
        started = time.time()
        try:
            with deadline(TIMEOUT_S):
                r = check_class(original, rewritten, name, overrides, dtype, args.repeats, probe, args.kernels, shapes.get(name))
        except (Exception, SystemExit) as e:  # a model we cannot build or feed is reported, not raised
            r = not_runnable(name, e)
        r.update({"variant": vname, "seconds": round(time.time() - started, 3)})
        channel.progress(model=name, status=r["status"], message=vname)
        results.append(r)
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("original")
    p.add_argument("--variant", action="append", default=[], help="NAME=PATH of a rewritten file")
    p.add_argument("--classes", default="", help="comma-separated; default: every nn.Module class")
    p.add_argument("--config", default="{}", help="JSON of constructor arguments or config attributes")
    p.add_argument("--dtype", default="fp64", choices=["fp32", "fp64"])
    p.add_argument("--repeats", type=int, default=0, help="time forward and training step (median of N)")
    p.add_argument("--kernels", action="store_true", help="after a float64 pass that matched, compare again in float32, where the compiled kernels run")
    p.add_argument("--own-package", action="store_true", help="load each variant in the package its own path is in (a rewritten copy of the package)")
    p.add_argument("--shape", action="append", default=[], help="NAME=2,7,32: the shape of class NAME's first input (default: found)")
    args = p.parse_args()
    channel = Channel("file")
    dtype = TORCH_DTYPES[args.dtype]
    overrides = json.loads(args.config)
    shapes = {}
    for given in args.shape:
        cls, _, sizes = given.partition("=")
        shapes[cls] = tuple(int(n) for n in sizes.split(","))
    try:
        original = load(args.original, True)
    except (Exception, SystemExit) as e:
        channel.result({"results": [], "torch": torch.__version__, "error": f"cannot import {args.original}: {importing_fails(e)}"})
        return
    names = [c for c in args.classes.split(",") if c] or module_classes(original)
    results = []
    for variant in args.variant:
        vname, path = variant.split("=", 1)
        results += check_variant(args, channel, original, names, vname, path, dtype, overrides, shapes)
    channel.result({"results": results, "torch": torch.__version__})


if __name__ == "__main__":
    main()
