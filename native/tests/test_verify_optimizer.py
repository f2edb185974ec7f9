"""An optimizer the model builds for itself is stepped on both sides (optimizer_pass.py): a rewrite
of its construction shows only in step(), which a forward and backward never run."""
import textwrap

from test_verify_exercised import run

TRAINABLE = textwrap.dedent('''
    import torch
    from torch import nn


    class Trainable(nn.Module):
        def __init__(self, d=16):
            super().__init__()
            self.linear = nn.Linear(d, d)
            self.optimizer = self.configure_optimizers()

        def configure_optimizers(self):
            return torch.optim.AdamW(self.linear.parameters(), lr=1e-2, weight_decay=0.01)

        def forward(self, x):
            return self.linear(x)
''')

CALL = "torch.optim.AdamW(self.linear.parameters(), lr=1e-2, weight_decay=0.01)"


def test_the_fused_step_is_stepped_and_compared_in_both_passes(tmp_path):
    fused = ("import adopt_kernels as _adopt\n" + TRAINABLE).replace(CALL, CALL.replace("torch.optim.AdamW", "_adopt.FusedAdamW"))
    r = run(tmp_path, TRAINABLE, fused, "--dtype", "fp64", "--kernels")["Trainable"]
    assert r["status"] == "verified", r
    assert r["optimizer_steps"] == 3
    # float64 steps with torch's code; the float32 pass runs the compiled step
    assert r["kernel_pass"]["status"] == "verified" and r["kernel_pass"]["compiled_kernels"].get("adamw", 0) >= 3


def test_an_optimizer_built_otherwise_is_a_mismatch_after_its_first_step(tmp_path):
    """The negative control: a construction that changes a setting (lr) computes the same forward
    and gradients; only the step tells them apart."""
    wrong = TRAINABLE.replace("lr=1e-2", "lr=2e-2")
    r = run(tmp_path, TRAINABLE, wrong, "--dtype", "fp64")["Trainable"]
    assert r["status"] == "mismatch", r
    assert r["problems"][0].startswith("optimizer: after optimizer step 1: linear.")


def test_a_model_without_an_optimizer_takes_no_steps(tmp_path):
    plain = TRAINABLE.replace("        self.optimizer = self.configure_optimizers()\n", "")
    r = run(tmp_path, plain, plain, "--dtype", "fp64")["Trainable"]
    assert r["status"] == "verified" and "optimizer_steps" not in r
