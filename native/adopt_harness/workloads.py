"""The compiled-kernel workloads a rewritten model runs at its real size.

`adopt tune model.py` and `adopt rewrite --tune` land here. Every model class of the rewritten
file is built at its real configuration (its config class's defaults, with `--config` on top),
except that the layer count is cut to one: each layer repeats the same workloads, and a 7B model
at full depth would not fit in memory. The classes are taken from the last defined (the outermost
model, in the usual file order) to the first, and a class already contained in one that ran is
not run again. Each runs one training step (forward in train mode, backward, and a step of the
fused optimizer when asked) on inputs of the given batch and sequence length, and every
(kernel, workload) the compiled kernels were called with is reported.

Prints one JSON object as its last line: {"workloads": [{kernel, workload, calls}], "classes": [...]}.
"""
import argparse
import inspect
import json
import signal
import sys
import traceback

import torch
from torch import nn

from adopt_harness.build import config_of, constructor_kwargs, load, module_classes
from adopt_harness.hf_inputs import LAYERS
from adopt_harness.inputs import first_leaf, label_keyword, required_inputs

# Layer counts outside transformers' names, by constructor parameter or config attribute.
DEPTH_NAMES = set(LAYERS) | {"num_layers", "n_layer", "n_layers", "depth", "layers", "num_hidden_layers",
                             "num_decoder_layers", "num_encoder_layers", "encoder_layers", "decoder_layers"}


class Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise Timeout("timed out")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def build_real(module, name, overrides, changed):
    """The class at its real size (the shared builder without shrinking), depth cut to one layer
    where the user did not give it."""
    cls = getattr(module, name)
    kwargs = constructor_kwargs(module, name, overrides, tiny=False)
    config = config_of(kwargs)
    if config is not None:
        for k in list(vars(config)):
            v = getattr(config, k)
            if k in DEPTH_NAMES and _is_int(v) and v > 1 and k not in overrides:
                setattr(config, k, 1)
                changed[k] = {"from": v, "to": 1}
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.name in DEPTH_NAMES and p.name not in kwargs and _is_int(p.default) and p.default > 1:
            kwargs[p.name] = 1
            changed[p.name] = {"from": p.default, "to": 1}
    return cls(**kwargs), config


def _size(config, *names, default):
    for n in names:
        v = getattr(config, n, None)
        if _is_int(v):
            return v
        if isinstance(v, (tuple, list)) and v and _is_int(v[0]):
            return v[0]
    return default


def real_inputs(model, config, batch, seq):
    """Inputs of the real batch and sequence length for the module the model starts with."""
    leaf = first_leaf(model)
    if isinstance(leaf, nn.Embedding):
        return torch.randint(0, min(leaf.num_embeddings, 1000), (batch, seq)), f"ids({batch},{seq})"
    if isinstance(leaf, nn.Conv2d):
        side = _size(config, "image_size", "img_size", default=224)
        return torch.randn(batch, leaf.in_channels, side, side), f"image({batch},{leaf.in_channels},{side},{side})"
    width = None
    if isinstance(leaf, nn.Linear):
        width = leaf.in_features
    elif isinstance(leaf, nn.LayerNorm):
        width = leaf.normalized_shape[-1]
    elif type(leaf).__name__ == "Conv1D":
        width = leaf.weight.shape[0]
    width = width or _size(config, "hidden_size", "d_model", "n_embd", "dim", "embed_dim", default=None)
    if width is None:
        raise RuntimeError("cannot tell what input it takes (no embedding, image or feature width found)")
    return torch.randn(batch, seq, width), f"float({batch},{seq},{width})"


def loss_of(out):
    if isinstance(out, torch.Tensor):
        return out.float().mean() if out.is_floating_point() and out.requires_grad else None
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        parts = [p for p in (loss_of(o) for o in out) if p is not None]
        return sum(parts) if parts else None
    return None


def training_step(model, config, batch, seq, optimizer):
    x, label = real_inputs(model, config, batch, seq)
    req = required_inputs(model)
    if len(req) > 1:
        raise RuntimeError(f"forward takes {len(req)} required inputs; give the model class with --class")
    model.train()
    key = label_keyword(model, x)
    if key:
        label += f", {key}"
    loss = loss_of(model(x, **({key: x.clone()} if key else {})))
    if loss is not None:
        loss.backward()
    if optimizer and loss is not None:
        import adopt_kernels

        adopt_kernels.FusedAdamW([p for p in model.parameters() if p.grad is not None], lr=1e-4).step()
    return label


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rewritten")
    p.add_argument("--original", help="the original file, so that relative imports resolve from its package")
    p.add_argument("--config", default="{}", help="JSON object: constructor arguments or config attributes")
    p.add_argument("--class", dest="classes", action="append", default=[])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--optimizer", action="store_true", help="also run a step of the fused AdamW")
    p.add_argument("--timeout", type=int, default=600, help="seconds per class")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    from adopt_kernels import _dispatch
    from adopt_kernels.threads import set_threads

    if args.threads:
        set_threads(args.threads)

    overrides = json.loads(args.config)
    module = load(args.rewritten, False, package_from=args.original)
    names = args.classes or list(reversed(module_classes(module)))
    covered, classes = set(), []
    signal.signal(signal.SIGALRM, _alarm)
    for name in names:
        if getattr(module, name) in covered:
            classes.append({"class": name, "status": "covered"})
            continue
        changed = {}
        signal.alarm(args.timeout)
        try:
            torch.manual_seed(0)
            model, config = build_real(module, name, overrides, changed)
            covered.update(type(m) for m in model.modules())
            before = sum(_dispatch.WORKLOADS.values())
            label = training_step(model, config, args.batch, args.seq, args.optimizer)
            classes.append({"class": name, "status": "ran", "inputs": label, "depth": changed,
                            "compiled_calls": sum(_dispatch.WORKLOADS.values()) - before})
        except Exception as e:  # one class that does not build or run leaves the others
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            classes.append({"class": name, "status": "not_run", "reason": last[:300]})
        finally:
            signal.alarm(0)
            model = None
    workloads = [{"kernel": k, "workload": dict(w), "calls": n} for (k, w), n in sorted(_dispatch.WORKLOADS.items())]
    # kernels whose calls were all below their size floor ran the torch code: nothing of theirs to tune
    below_floor = sorted(k for k in _dispatch.SMALL if not any(w["kernel"] == k for w in workloads))
    print(json.dumps({"workloads": workloads, "classes": classes, "below_floor": below_floor, "batch": args.batch, "seq": args.seq,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
