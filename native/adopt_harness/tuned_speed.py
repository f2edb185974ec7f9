"""Training-step time of a model: original, rewritten with default schedules, rewritten with tuned ones.

`npm run bench:tuned` lands here after tuning. One process, one model built three ways from the
same weights (the rewritten class is built once: the two rewritten variants differ only in the
schedule table the dispatcher reads, which is switched before each of their steps), timed
interleaved (every other round backwards, and the first of the three turning each pair of rounds:
rounds.py) after warm-up, median of the repeats, and each ratio paired round by round as well (speed.paired_ratio).
Dropout is off so the three compute the same thing; the tuned and default outputs are also
compared against the original's.

Prints one JSON line per sequence length and writes all of them to OUT.
"""
import argparse
import importlib
import json
import statistics
import time

import torch

from adopt_harness import blas_setting
from adopt_harness.compare import first_tensor
from adopt_harness.dropout import config_without_dropout
from adopt_harness.rounds import in_round
from adopt_kernels.threads import set_threads
from adopt_harness.speed import MODELS, idle_threads_setting, inputs_for, load_rewritten, paired_ratio


def step(model, inputs):
    t0 = time.perf_counter()
    out = first_tensor(model(**inputs)).float().pow(2).mean()
    out.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--rewritten", required=True, help="the rewritten modeling file (without schedule loading)")
    p.add_argument("--schedules", required=True, help="the tuned schedule file")
    p.add_argument("--seq", default="128")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    blas_setting.add_option(p)
    args = p.parse_args()
    blas = blas_setting.apply(args)
    set_threads(args.threads)
    from adopt_kernels import _dispatch, memory, schedules

    module, cls_name, overrides = MODELS[args.model]
    original = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    rewritten = load_rewritten(module, args.rewritten, "tuned")
    cls_a, cls_b = getattr(original, cls_name), getattr(rewritten, cls_name)
    config = config_without_dropout(cls_a.config_class(**overrides))
    torch.manual_seed(0)
    a = cls_a(config)
    b = cls_b(config)
    b.load_state_dict(a.state_dict(), strict=True)
    a.train()
    b.train()

    def use(which):
        schedules.clear()
        if which == "tuned":
            schedules.use(args.schedules)

    rows = []
    for seq in [int(s) for s in args.seq.split(",")]:
        inputs = inputs_for(args.model, config, seq, "cpu", args.batch)
        with torch.no_grad():
            ref = first_tensor(a(**inputs)).float()
            agree = {}
            for which in ("default", "tuned"):
                use(which)
                agree[which] = float((first_tensor(b(**inputs)).float() - ref).abs().max() / (ref.abs().max() or 1.0))
        times = {"original": [], "default": [], "tuned": []}
        calls = dict(_dispatch.CALLS)
        for r in range(args.repeats + 2):
            for which, _ in in_round(times, r):
                if which == "original":
                    t = step(a, inputs)
                else:
                    use(which)
                    t = step(b, inputs)
                if r >= 2:
                    times[which].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"model": args.model, "seq": seq, "batch": args.batch, "threads": torch.get_num_threads(), "blas": blas,
               # the process settings bench:tuned passed on ($ADOPT_KEEP_FREED_MEMORY, ...), for all three alike
               "malloc": "kept" if memory.kept() else "system", "idle_threads": idle_threads_setting(),
               "train_original_s": med["original"], "train_default_s": med["default"], "train_tuned_s": med["tuned"],
               "default_over_original": med["default"] / med["original"], "tuned_over_original": med["tuned"] / med["original"],
               "tuned_over_default": med["tuned"] / med["default"], "max_rel_error": agree,
               "compiled_calls": sum(_dispatch.CALLS.values()) - sum(calls.values()),
               # the same ratios round by round (median and quartiles): speed.paired_ratio
               "paired": {f"{x}_over_{y}": paired_ratio(times, x, y) for x, y in (("tuned", "original"), ("default", "original"), ("tuned", "default"))}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    schedules.clear()
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
