"""`adopt tune model.py` runs each model class one training step to learn the workloads its
compiled kernels see. A language model's forward that takes labels runs its loss, and the fused
linear + cross-entropy a rewrite puts there, only with them: it is given them, so that kernel is
tuned too (it was never called, and nothing said so)."""
import json
import os
import subprocess
import sys
import textwrap

NATIVE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LM = textwrap.dedent('''
    import torch
    from torch import nn
    import torch.nn.functional as F
    import adopt_kernels as _adopt


    class TinyLM(nn.Module):
        def __init__(self, vocab_size=64, hidden_size=32):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, hidden_size)
            self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

        def forward(self, ids, labels=None):
            h = self.embed(ids)
            if labels is None:
                return self.lm_head(h)
            loss, logits = _adopt.linear_cross_entropy(h, self.lm_head, labels, shift=True, return_logits=True)
            return loss, logits
''')


def test_a_forward_taking_labels_is_given_them_and_its_fused_loss_is_a_workload(tmp_path):
    f = tmp_path / "lm.py"
    f.write_text(LM)
    p = subprocess.run([sys.executable, "-m", "adopt_harness.workloads", str(f), "--batch", "2", "--seq", "16"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": NATIVE, "ADOPT_CPU_MIN_BYTES": "0"})
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert [c["inputs"] for c in out["classes"] if c["status"] == "ran"] == ["ids(2,16), labels"]
    assert "linear_cross_entropy" in {w["kernel"] for w in out["workloads"]}
