"""Generation one token at a time: the original causal LM against its rewrite, side by side.

Decoding with a key/value cache hands every kernel one row per sequence, far below the size at
which a compiled call repays its fixed cost. This times greedy decoding of ``--tokens`` tokens
after a prompt of ``--prompt`` tokens (prefill not timed), under ``no_grad``, for three variants
built with the same weights and run in interleaved rounds (A B C, C B A, ...):

- ``original``: the transformers class;
- ``rewritten``: the rewrite as it ships, small calls handed to torch by the kernels' size floors;
- ``every call compiled``: the same rewrite with ``$ADOPT_CPU_MIN_BYTES=0``, every call on the
  compiled kernels (what the rewrite did before the floors).

Reported: the median seconds per token of each, their ratios over the original (above 1 is
slower), the paired ratio (``speed.paired_ratio``: round by round, rounds taken two by two so
that both orders count alike), the compiled calls each rewrite made per token, and the share of
tokens each rewrite picked as the original did.

Usage: python -m adopt_harness.decode_bench REWRITTEN_MODELS_DIR [--models gpt2,llama-style] [--batch 1]
       [--prompt 32] [--tokens 32] [--repeats 6] [--threads N] [--clock wall|cpu] [--keep-freed-memory] [--quiet-blas-threads]
Ends with one JSON line.
"""

import argparse
import contextlib
import importlib
import json
import os
import statistics
import sys
import time

import torch

from adopt_harness import blas_setting
from adopt_harness.dropout import config_without_dropout
from adopt_harness.rounds import in_round
from adopt_harness.speed import MODELS, load_rewritten, paired_ratio
from adopt_kernels import _dispatch, idle_threads, memory, threads

# the causal LM class of each model speed.py knows that generates text
LM_CLASSES = {"gpt2": "GPT2LMHeadModel", "llama-style": "LlamaForCausalLM"}


@contextlib.contextmanager
def every_call_compiled(on):
    if not on:
        yield
        return
    with _dispatch.at_any_size():
        yield


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def decode(model, prompt, tokens, clock=time.perf_counter):
    """Greedy tokens after ``prompt`` (batch x length), and the seconds the decoding loop took."""
    with torch.no_grad():
        out = model(input_ids=prompt, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        picked = [nxt]
        t0 = clock()
        for _ in range(tokens - 1):
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            picked.append(nxt)
        took = clock() - t0
    return torch.cat(picked, 1), took


def build(key, rewritten_dir):
    module, _, overrides = MODELS[key]
    cls_name = LM_CLASSES[key]
    original = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    rewritten = load_rewritten(module, f"{rewritten_dir}/{module}/modeling_{module}.py", "decode")
    cls_a, cls_b = getattr(original, cls_name), getattr(rewritten, cls_name)
    config = config_without_dropout(cls_a.config_class(**overrides))
    torch.manual_seed(0)
    a = cls_a(config).eval()
    b = cls_b(config).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    return a, b, config


def model_row(key, args):
    a, b, config = build(key, args.rewritten_dir)
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, config.vocab_size, (args.batch, args.prompt), generator=g)
    variants = {"original": (a, False), "rewritten": (b, False), "every call compiled": (b, True)}
    times = {k: [] for k in variants}
    calls = {k: 0 for k in variants}
    picked = {}
    for r in range(args.repeats + 1):  # the first round warms up (builds, first-touch pages)
        for k, (m, forced) in in_round(variants, r):
            before = sum(_dispatch.CALLS.values())
            with every_call_compiled(forced):
                tokens, took = decode(m, prompt, args.tokens, CLOCKS[args.clock])
            calls[k] = sum(_dispatch.CALLS.values()) - before
            if r:
                times[k].append(took / (args.tokens - 1))
            picked.setdefault(k, tokens)
    med = {k: statistics.median(v) for k, v in times.items()}
    # the same tokens: a rewrite computes what the original does (to rounding, which could flip a
    # near tie of a randomly initialised model's logits: counted, not hidden)
    agree = {k: float((picked[k] == picked["original"]).float().mean()) for k in picked if k != "original"}
    return {
        "model": key, "class": LM_CLASSES[key], "batch": args.batch, "prompt": args.prompt, "tokens": args.tokens,
        "seconds_per_token": med,
        "over_original": {k: med[k] / med["original"] for k in med if k != "original"},
        "paired_over_original": {k: paired_ratio(times, k) for k in med if k != "original"},
        "compiled_calls_per_token": {k: calls[k] / args.tokens for k in calls if k != "original"},
        "tokens_as_original": agree,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("rewritten_dir")
    p.add_argument("--models", default=",".join(LM_CLASSES))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=6, help="timed rounds; the paired ratio takes them two by two (both orders), an odd last one left out")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="cpu: the process's CPU time (with --threads 1 on a busy machine it counts the work, not the waits)")
    p.add_argument("--keep-freed-memory", action="store_true")
    p.add_argument("--quiet-blas-threads", action="store_true")
    blas_setting.add_option(p)
    args = p.parse_args(argv)
    keys = [k for k in args.models.split(",") if k]
    unknown = [k for k in keys if k not in LM_CLASSES]
    if unknown:
        print(f"adopt decode_bench: unknown model(s) {', '.join(unknown)}; known: {', '.join(LM_CLASSES)}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print("adopt decode_bench: --repeats must be at least 1 (a first round warms up and is not timed)", file=sys.stderr)
        return 2
    if args.tokens < 2:
        print("adopt decode_bench: --tokens must be at least 2 (the first token comes from the prompt's pass)", file=sys.stderr)
        return 2
    os.environ.pop(_dispatch.CPU_MIN_BYTES_ENV, None)  # the floors as they ship
    threads.set_threads(args.threads)
    if args.keep_freed_memory:
        memory.keep_freed_memory()
    if args.quiet_blas_threads:
        idle_threads.quiet_blas_threads()
    blas = blas_setting.apply(args)
    print(f"threads {args.threads} (all variants); batch {args.batch}, prompt {args.prompt}, {args.tokens} tokens greedy, "
          f"{args.repeats} interleaved rounds; malloc {'kept' if memory.kept() else 'the system' + chr(39) + 's'}; BLAS: {blas}")
    print(f"{'model':<12} {'original ms/tok':>15} {'rewritten':>10} {'x':>6} {'paired':>16} {'calls/tok':>9} "
          f"{'every call compiled':>20} {'x':>6} {'paired':>16} {'calls/tok':>9}")
    rows = []
    for key in keys:
        r = model_row(key, args)
        rows.append(r)
        s, x, c, pr = r["seconds_per_token"], r["over_original"], r["compiled_calls_per_token"], r["paired_over_original"]
        q = lambda k: f"{pr[k]['median']:.3f} [{pr[k]['q1']:.2f}-{pr[k]['q3']:.2f}]"  # noqa: E731
        print(f"{key:<12} {s['original'] * 1e3:15.2f} {s['rewritten'] * 1e3:10.2f} {x['rewritten']:6.3f} {q('rewritten'):>16} "
              f"{c['rewritten']:9.1f} {s['every call compiled'] * 1e3:20.2f} {x['every call compiled']:6.3f} "
              f"{q('every call compiled'):>16} {c['every call compiled']:9.1f}", flush=True)
        for k, share in r["tokens_as_original"].items():
            if share < 1.0:
                print(f"  {key}: {k} picked {share:.0%} of the tokens the original did", flush=True)
    print("x: time over the original's (above 1 is slower), of the medians; paired: the median [quartiles] of the rounds' ratios")
    print(json.dumps({"threads": args.threads, "clock": args.clock, "blas": blas, "models": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
