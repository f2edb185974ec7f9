"""Model speed, original vs rewritten, side by side in one process.

For each model the original transformers class and the rewritten file's class are built with the
same seed and weights (the rewritten model loads the original's state dict strictly), then
forward passes and training steps are timed alternately, A B, B A, ..., after warm-up; medians are
reported with their ratio. On a GPU it runs in bf16 and reports peak memory per variant.

Besides the rewrite with every rule ("rewritten"), each `--variant RULE=DIR` is a rewrite with that
one rule only, timed in the same interleaved loop, so the table shows what each rule contributes.

Models are loaded, freed of dropout (``--dropout config`` keeps what their configuration sets: the
training step as it is run, both sides alike), fed and counted through the harness library (build.py,
dropout.py, inputs.py, counting.py), like every other entry point.

Besides the ratio of the medians, each entry carries the ratio paired round by round (its median
and quartiles, ``paired``): on a shared machine a slow spell moves one side's median, while both
steps of one round share it.

Usage: python -m adopt_harness.speed REWRITTEN_MODELS_DIR [--variant RULE=DIR ...] [--seq 128,512] [--repeats 6]
       [--train-repeats N] [--batch N] [--threads N] [--clock wall|cpu] [--profile] [--keep-freed-memory] [--quiet-blas-threads]
       [--dropout off|config] [--without KERNEL ...]
Writes progress lines as it measures and one result line per model (schema.py: SpeedRow).
"""
import argparse
import importlib
import math
import os
import statistics
import time

import torch

from adopt_harness import blas_setting
from adopt_harness.build import load_as
from adopt_harness.compare import first_tensor
from adopt_harness.counting import FastPathCounter
from adopt_harness.dropout import config_without_dropout, no_dropout
from adopt_harness.inputs import timing_inputs
from adopt_harness.protocol import Channel
from adopt_harness.rounds import in_round
from adopt_harness.text import clip
from adopt_kernels._impl.switches import ENV_VAR
from adopt_kernels import idle_threads, memory, threads
from adopt_kernels.registry import switch_names

MODELS = {
    # name: (module, class, config overrides)
    "bert-base": ("bert", "BertModel", {}),
    "roberta-base": ("roberta", "RobertaModel", {"max_position_embeddings": 514}),
    # AlbertConfig() defaults to albert-xxlarge: the base sizes are given
    "albert-base": ("albert", "AlbertModel", {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072, "embedding_size": 128}),
    "gpt2": ("gpt2", "GPT2Model", {}),
    "t5-small": ("t5", "T5EncoderModel", {"d_model": 512, "d_ff": 2048, "num_layers": 6, "num_heads": 8}),
    "vit-base": ("vit", "ViTModel", {}),
    "llama-style": ("llama", "LlamaModel", {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 32000}),
}


def load_rewritten(model, path, tag="all"):
    return load_as(path, f"transformers.models.{model}", f"adopt_speed_{tag}")


def inputs_for(key, config, seq, device, batch):
    return timing_inputs(config, seq, batch, device, image=key == "vit-base")


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def agreement(cls_a, config, state, variants, inputs):
    """Eval outputs of the original and the rewrite, each against the original run in float32,
    and how many kernel calls (and SDPA calls) the rewrite's forward made: in low precision the
    rewrite should be no less accurate than the original, and the calls show the fast path ran."""
    device = inputs[next(iter(inputs))].device
    ref = cls_a(config).to(device=device, dtype=torch.float32)
    ref.load_state_dict(state, strict=True)
    ref.eval()
    with torch.no_grad():
        r = first_tensor(ref(**inputs)).float()
        o = first_tensor(variants["original"].eval()(**inputs)).float()
        with FastPathCounter() as counter:
            w = first_tensor(variants["rewritten"].eval()(**inputs)).float()
    scale = r.abs().max().item() or 1.0
    return {
        "error_vs_fp32_original": (o - r).abs().max().item() / scale,
        "error_vs_fp32_rewritten": (w - r).abs().max().item() / scale,
        **counter.result(),
    }


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_pair(models, inputs, device, repeats, train, clock=time.perf_counter):
    """Seconds per variant, A B, B A, A B ... (rounds.py), after two warm-up rounds: the median of
    each variant, its peak memory on a GPU, and every round's times (for :func:`paired_ratio`).
    ``clock`` may be the process's CPU time: with one thread on an
    oversubscribed machine it counts the work done, not the time slices other processes took."""
    times = {k: [] for k in models}
    peak = {}
    for k, m in models.items():
        m.train(train)
    for r in range(repeats + 2):
        for k, m in in_round(models, r):
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            t0 = clock()
            if train:
                out = first_tensor(m(**inputs)).float().pow(2).mean()
                out.backward()
                m.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    m(**inputs)
            sync(device)
            if r >= 2:  # warm-up first
                times[k].append(clock() - t0)
            if device == "cuda":
                peak[k] = max(peak.get(k, 0), torch.cuda.max_memory_allocated())
    return {k: statistics.median(v) for k, v in times.items()}, peak, times


def paired_ratio(times, variant, base="original"):
    """The ratio variant/base round by round: its median and quartiles, how many rounds found
    the variant slower, and a one-sided sign test of that count.

    A round times the two back to back, so a slow spell of a shared machine lands on both sides
    of one round's ratio, where it would move one side's median alone. Rounds alternate which
    side goes first (rounds.py) and the step that goes second can run faster or slower for it:
    an odd last round is left out, so that both orders count equally. ``p_slower`` is the chance
    of at least that many slower rounds if neither side were faster (binomial, one half): with
    six rounds only all six slower gives under 0.05."""
    pairs = list(zip(times[variant], times[base]))
    pairs = pairs[: len(pairs) // 2 * 2] or pairs  # a single round stands alone
    ratios = sorted(a / b for a, b in pairs)
    n, slower = len(ratios), sum(r > 1 for r in ratios)
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if n > 1 else ratios * 3
    p_slower = sum(math.comb(n, k) for k in range(slower, n + 1)) / 2 ** n
    return {"median": statistics.median(ratios), "q1": q1, "q3": q3, "rounds": n, "slower_rounds": slower, "p_slower": p_slower}


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::_convolution", "aten::mkldnn_convolution",
              "aten::convolution_backward", "aten::thnn_conv2d", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward")


def non_matmul_share(model, inputs):
    """One profiled training step: seconds in matrix products (and convolutions) and outside them.

    Self CPU time per op, so a matmul's time is counted once whatever calls it; the outside share
    is the ceiling of what fusing the other ops can remove."""
    from torch.profiler import ProfilerActivity, profile

    model.train(True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = first_tensor(model(**inputs)).float().pow(2).mean()
        out.backward()
    model.zero_grad(set_to_none=True)
    total = mm = 0.0
    for e in prof.key_averages():
        t = e.self_cpu_time_total / 1e6
        total += t
        if e.key in MATMUL_OPS:
            mm += t
    return {"total_s": total, "matmul_s": mm, "non_matmul_s": total - mm, "non_matmul_share": (total - mm) / total if total else None}


# switches read outside the timed forward and backward (the optimizer's step), where --without
# would time nothing of theirs
ACTS_OUTSIDE_THE_STEP = ("fused_optimizer",)


class Without(torch.nn.Module):
    """The rewritten model with some kernels switched off (``$ADOPT_DISABLE`` set around each
    forward, so they take the code they replace and their backward follows): the same instance,
    weights and memory as the rewrite, so a round compares the kernels' share alone."""

    def __init__(self, model, kernels):
        super().__init__()
        self.model = model
        self.kernels = ",".join(kernels)

    def forward(self, *args, **kwargs):
        before = os.environ.get(ENV_VAR)
        os.environ[ENV_VAR] = ",".join(filter(None, [before, self.kernels]))
        try:
            return self.model(*args, **kwargs)
        finally:
            if before is None:
                del os.environ[ENV_VAR]
            else:
                os.environ[ENV_VAR] = before


def build_variants(key, args, device, dtype):
    """The original class, its config and every variant (original, rewritten, one per rule), built
    with the same weights."""
    module, cls_name, overrides = MODELS[key]
    original = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    rewritten = load_rewritten(module, f"{args.rewritten_dir}/{module}/modeling_{module}.py")
    cls_a, cls_b = getattr(original, cls_name), getattr(rewritten, cls_name)
    config = cls_a.config_class(**overrides)
    if args.dropout == "off":
        config = config_without_dropout(config)
    torch.manual_seed(0)
    a = cls_a(config).to(device=device, dtype=dtype)
    variants = {"original": a, "rewritten": cls_b(config).to(device=device, dtype=dtype)}
    for v in args.variant:
        rule, vdir = v.split("=", 1)
        path = f"{vdir}/{module}/modeling_{module}.py"
        if os.path.exists(path):  # the rule rewrote something in this model
            variants[rule] = getattr(load_rewritten(module, path, rule), cls_name)(config).to(device=device, dtype=dtype)
    for m in variants.values():
        m.load_state_dict(a.state_dict(), strict=True)
        if args.dropout == "off":
            no_dropout(m)
    for kernel in args.without:
        variants[f"without {kernel}"] = Without(variants["rewritten"], [kernel])
    return cls_a, config, variants


def measure(variants, inputs, device, args):
    """Forward and training-step times of every variant, as one SpeedEntry."""
    clock = CLOCKS[args.clock]
    fwd, _, fwd_rounds = time_pair(variants, inputs, device, args.repeats, train=False, clock=clock)
    trn, peak_t, trn_rounds = time_pair(variants, inputs, device, args.train_repeats or args.repeats, train=True, clock=clock)
    entry = {
        "forward_original_s": fwd["original"], "forward_rewritten_s": fwd["rewritten"],
        "forward_ratio": fwd["rewritten"] / fwd["original"],
        "train_original_s": trn["original"], "train_rewritten_s": trn["rewritten"],
        "train_ratio": trn["rewritten"] / trn["original"],
        "paired": {"forward": paired_ratio(fwd_rounds, "rewritten"), "train": paired_ratio(trn_rounds, "rewritten")},
        "per_rule": {k: {"forward_ratio": fwd[k] / fwd["original"], "train_ratio": trn[k] / trn["original"],
                         **({"memory_ratio": peak_t[k] / peak_t["original"]} if peak_t else {})}
                     for k in variants if k not in ("original", "rewritten") and not k.startswith("without ")},
        # each kernel's own share: the rewrite with it switched off over the rewrite, round by round
        "without": {k[len("without "):]: {"train_paired_over_rewritten": paired_ratio(trn_rounds, k, base="rewritten"),
                                          "forward_paired_over_rewritten": paired_ratio(fwd_rounds, k, base="rewritten"),
                                          "train_over_original": trn[k] / trn["original"]}
                    for k in variants if k.startswith("without ")},
    }
    if args.profile:
        entry["profile"] = {k: non_matmul_share(variants[k], inputs) for k in ("original", "rewritten")}
        share = entry["profile"]["original"]["non_matmul_share"]
        # the time the rewrite saved, as a share of the original step's time outside
        # matmuls (the ceiling of what fusion can remove); measured time, not profiled
        # ops, since a compiled attention kernel does its own products
        saved = trn["original"] - trn["rewritten"]
        entry["profile"]["removed_of_non_matmul"] = saved / (trn["original"] * share) if share else None
    if peak_t:
        entry.update({"peak_original_bytes": peak_t["original"], "peak_rewritten_bytes": peak_t["rewritten"], "memory_ratio": peak_t["rewritten"] / peak_t["original"]})
    else:
        entry["memory_ratio"] = None  # CPU: no per-variant peak from torch
    return entry


def idle_threads_setting():
    """How idle BLAS and OpenMP threads wait in this process, for the result row: "blas sleep,
    openmp spin" and the like ("blas none" where no OpenBLAS is loaded)."""
    r = idle_threads.report()
    return f"blas {(r['openblas'] or {}).get('idle', 'none')}, openmp {r['openmp_idle']}"


def model_row(key, args, device, dtype, channel):
    row = {"model": key, "device": device, "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(), "clock": args.clock,
           "malloc": "kept" if memory.kept() else "system", "idle_threads": idle_threads_setting(), "dropout": args.dropout,
           "blas": args.blas}
    try:
        cls_a, config, variants = build_variants(key, args, device, dtype)
        row["rules"] = [k for k in variants if k not in ("original", "rewritten") and not k.startswith("without ")]
        row["sdpa_alternative"] = "not available in transformers 4.35 (attn_implementation arrived in 4.36)"
        for seq in [int(s) for s in args.seq.split(",")]:
            if key == "vit-base" and seq != 128:
                continue
            inputs = inputs_for(key, config, seq, device, args.batch or (8 if device == "cuda" else 4))
            if dtype != torch.float32:
                row[f"agreement_seq{seq}"] = agreement(cls_a, config, variants["original"].state_dict(), variants, inputs)
                channel.progress(model=key, seq=seq, **row[f"agreement_seq{seq}"])
            entry = measure(variants, inputs, device, args)
            row[f"seq{seq}" if key != "vit-base" else "image224"] = entry
            channel.progress(model=key, seq=seq, **{k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items() if k != "per_rule"})
    except Exception as e:  # reported per model; the run goes on
        row["error"] = f"{type(e).__name__}: {clip(str(e), 300)}"
        channel.progress(model=key, message=row["error"])
    return row


def positive(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a count of at least 1, got {text}")
    return n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rewritten_dir")
    p.add_argument("--seq", default="128,512")
    p.add_argument("--repeats", type=positive, default=6, help="timed rounds of forward passes (after two warm-up rounds)")
    p.add_argument("--train-repeats", type=positive, default=None, help="timed rounds of training steps (default: --repeats)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--variant", action="append", default=[], help="RULE=DIR: the models rewritten with that rule only")
    p.add_argument("--without", action="append", default=[], metavar="KERNEL",
                   help="also time the rewrite with this kernel switched off ($ADOPT_DISABLE), paired with the rewrite")
    p.add_argument("--batch", type=int, default=0, help="default: 4 on CPU, 8 on a GPU")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch, the kernels and OpenBLAS alike (default: every core)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="cpu: the process's CPU time (meaningful with --threads 1 on a busy machine)")
    p.add_argument("--profile", action="store_true", help="also profile one training step of each: the share of time outside matmuls")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="malloc keeps freed blocks (adopt_kernels.memory), for both sides: no page faults for reused memory")
    p.add_argument("--quiet-blas-threads", action="store_true",
                   help="OpenBLAS's idle threads sleep instead of spinning (adopt_kernels.idle_threads), for both sides")
    p.add_argument("--dropout", choices=("off", "config"), default="off",
                   help="off: every dropout 0, so nothing random differs between the sides; config: the training "
                        "step as the model's configuration has it (its dropout on, both sides alike)")
    blas_setting.add_option(p)
    args = p.parse_args()
    timed = [k for k in switch_names() if k not in ACTS_OUTSIDE_THE_STEP]
    for kernel in args.without:
        if kernel not in timed:
            p.error(f"--without {kernel}: not a switch of what a forward and backward run; one of {', '.join(timed)}")
    args.blas = blas_setting.apply(args)
    if args.quiet_blas_threads and not idle_threads.quiet_blas_threads():
        p.error("--quiet-blas-threads: no OpenBLAS thread here could be quieted (the message above says why)")
    if args.keep_freed_memory and not memory.keep_freed_memory():
        p.error("--keep-freed-memory: this C library cannot keep freed memory (not glibc)")
    channel = Channel("speed")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    # Debian's torch starts with one thread: both sides get the same count, stated in the result
    threads.set_threads(args.threads)
    for key in args.models.split(","):
        if key not in MODELS:
            p.error(f"unknown model {key!r}: one of {', '.join(MODELS)}")
    for key in args.models.split(","):
        channel.result(model_row(key, args, device, dtype, channel))


if __name__ == "__main__":
    main()
