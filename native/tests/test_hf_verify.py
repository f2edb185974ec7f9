"""The HF harness on a real transformers model (BERT, from the transformers 4.35.0 that
scripts/setup-python.sh --hf installs): an exact rewrite verifies with a strict state-dict load, a
wrong one is a mismatch, and a rewrite that does not import is reported, one result line per model."""
import os
import subprocess
import sys

import pytest

NATIVE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import transformers.models.bert.modeling_bert as bert  # noqa: E402  (installed by setup-python.sh --hf)

from adopt_harness.protocol import results  # noqa: E402


def run(tmp_path, **files):
    args = []
    for model, text in files.items():
        path = tmp_path / f"{model}.py"
        path.write_text(text)
        args.append(f"bert={path}")
    p = subprocess.run([sys.executable, "-m", "adopt_harness.hf_verify", *args], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return results(p.stdout.splitlines())


SOURCE = open(bert.__file__).read()


def test_an_unchanged_copy_verifies_with_a_strict_load(tmp_path):
    [r] = run(tmp_path, same=SOURCE)
    assert r["model"] == "bert" and r["status"] == "verified", r
    assert r["strict_load"] is True


def test_a_softmax_moved_to_another_dimension_is_a_mismatch(tmp_path):
    wrong = SOURCE.replace("attention_probs = nn.functional.softmax(attention_scores, dim=-1)",
                           "attention_probs = nn.functional.softmax(attention_scores, dim=-2)")
    assert wrong != SOURCE
    [r] = run(tmp_path, wrong=wrong)
    assert r["status"] == "mismatch", r
    assert any("output" in p or "grad" in p for p in r["problems"])


def test_a_renamed_submodule_breaks_the_strict_load_and_is_a_mismatch(tmp_path):
    renamed = SOURCE.replace("self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)\n        self.dropout = nn.Dropout(config.hidden_dropout_prob)\n\n    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor)",
                             "self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)\n        self.LayerNorm = self.norm\n        self.dropout = nn.Dropout(config.hidden_dropout_prob)\n\n    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor)", 1)
    assert renamed != SOURCE
    [r] = run(tmp_path, renamed=renamed)
    assert r["status"] == "mismatch", r


def test_each_model_is_one_line_even_when_the_rewrite_fails_to_import(tmp_path):
    [r] = run(tmp_path, broken=SOURCE + "\nimport adopt_no_such_package\n")
    assert r["model"] == "bert" and r["status"] == "mismatch", r
    assert "adopt_no_such_package" in (r.get("reason") or " ".join(r.get("problems", [])))
