"""Where a rewritten model spends its time, beside the original's (torch.profiler).

Usage: PYTHONPATH=native:DEPS python3 scripts/profile-model.py REWRITTEN_MODELS_DIR MODEL [SEQ]
           [--train] [--batch N] [--threads N] [--rows N] [--only original|rewritten]
MODEL is a key of adopt_harness.speed.MODELS. Prints, per variant, the ops with the most self
CPU time (and self device time on a GPU) in one forward, or with ``--train`` in one training step
(forward, loss, backward), and how many syncs it made. With ``--train`` it also prints the step's
self time inside and outside matrix products, as bench:models counts them.
"""
import argparse
import importlib

import torch
from torch.profiler import ProfilerActivity, profile

from adopt_harness.compare import first_tensor
from adopt_harness.dropout import config_without_dropout, no_dropout
from adopt_harness.speed import MATMUL_OPS, MODELS, inputs_for, load_rewritten
from adopt_kernels.threads import set_threads


def step(model, inputs, train):
    if not train:
        with torch.no_grad():
            model(**inputs)
        return
    first_tensor(model(**inputs)).float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rewritten_dir")
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("seq", nargs="?", type=int, default=512)
    p.add_argument("--train", action="store_true", help="profile a training step instead of a forward")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rows", type=int, default=14, help="ops listed per variant")
    p.add_argument("--only", choices=("original", "rewritten"), help="profile one variant")
    args = p.parse_args()
    set_threads(args.threads)  # OpenBLAS's own threads too
    module, cls_name, overrides = MODELS[args.model]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    original = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    rewritten = load_rewritten(module, f"{args.rewritten_dir}/{module}/modeling_{module}.py")
    cls_a, cls_b = getattr(original, cls_name), getattr(rewritten, cls_name)
    config = config_without_dropout(cls_a.config_class(**overrides))
    torch.manual_seed(0)
    a = cls_a(config).to(device=device, dtype=dtype).train(args.train)
    b = cls_b(config).to(device=device, dtype=dtype).train(args.train)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        no_dropout(m)
    inputs = inputs_for(args.model, config, args.seq, device, args.batch)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    what = "training step" if args.train else "forward"
    for name, m in (("original", a), ("rewritten", b)):
        if args.only and name != args.only:
            continue
        for _ in range(1 if args.train else 3):
            step(m, inputs, args.train)
        if device == "cuda":
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            step(m, inputs, args.train)
            if device == "cuda":
                torch.cuda.synchronize()
        events = prof.key_averages()
        syncs = sum(e.count for e in events if "Synchronize" in e.key or e.key == "aten::item" or e.key == "aten::_local_scalar_dense")
        total = sum(e.self_cpu_time_total for e in events) / 1e6
        mm = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / 1e6
        print(f"== {args.model} {name} {what} seq {args.seq} batch {args.batch} threads {args.threads}: "
              f"self CPU {total:.3f} s, matmul {mm:.3f} s, outside matmul {total - mm:.3f} s; syncs/item calls {syncs}")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=48))
        if device == "cuda":
            print(events.table(sort_by="self_cuda_time_total", row_limit=10, max_name_column_width=48))


if __name__ == "__main__":
    main()
