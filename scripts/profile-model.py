"""Where a rewritten model's forward spends its time, beside the original's (torch.profiler).

Usage: PYTHONPATH=native:DEPS python3 scripts/profile-model.py REWRITTEN_MODELS_DIR MODEL [SEQ]
MODEL is a key of adopt_harness.speed.MODELS. Prints, per variant, the ops with the most self
CPU time and the most self device time in one forward, and how many syncs it made.
"""
import importlib
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from adopt_harness.speed import MODELS, inputs_for, load_rewritten


def main():
    rewritten_dir, key = sys.argv[1], sys.argv[2]
    seq = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    module, cls_name, overrides = MODELS[key]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    original = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    rewritten = load_rewritten(module, f"{rewritten_dir}/{module}/modeling_{module}.py")
    cls_a, cls_b = getattr(original, cls_name), getattr(rewritten, cls_name)
    config = cls_a.config_class(**overrides)
    torch.manual_seed(0)
    a = cls_a(config).to(device=device, dtype=dtype).eval()
    b = cls_b(config).to(device=device, dtype=dtype).eval()
    b.load_state_dict(a.state_dict())
    inputs = inputs_for(key, config, seq, device, 4)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    for name, m in (("original", a), ("rewritten", b)):
        with torch.no_grad():
            for _ in range(3):
                m(**inputs)
            if device == "cuda":
                torch.cuda.synchronize()
            with profile(activities=activities) as prof:
                m(**inputs)
                if device == "cuda":
                    torch.cuda.synchronize()
        events = prof.key_averages()
        syncs = sum(e.count for e in events if "Synchronize" in e.key or e.key == "aten::item" or e.key == "aten::_local_scalar_dense")
        print(f"== {key} {name} seq {seq}: syncs/item calls {syncs}")
        print(events.table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=48))
        if device == "cuda":
            print(events.table(sort_by="self_cuda_time_total", row_limit=10, max_name_column_width=48))


if __name__ == "__main__":
    main()
