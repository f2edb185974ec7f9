"""The LM-head harness (hf_lm_verify) on GPT-2's LM class, from the transformers 4.35.0 that
scripts/setup-python.sh --hf installs: the head and loss replaced by the fused kernel verify with
its calls counted, a wrong replacement is a mismatch, and the unchanged code verifies with a note
that the kernel never ran. Labels reach every LM the rewrite may touch."""
import os
import subprocess
import sys

import torch

import transformers.models.gpt2.modeling_gpt2 as gpt2  # noqa: E402  (installed by setup-python.sh --hf)

from adopt_harness.hf_lm_verify import merged, parse_target  # noqa: E402
from adopt_harness.lm_labels import LABELLED, add_lm_labels  # noqa: E402
from adopt_harness.protocol import results  # noqa: E402

SOURCE = open(gpt2.__file__).read()
# GPT2LMHeadModel's head and loss, as the installed file spells them: from the head's call to the
# return of the outputs
_HEAD = SOURCE.index("        lm_logits = self.lm_head(hidden_states)\n")
HEAD_AND_LOSS = SOURCE[_HEAD:SOURCE.index("        if not return_dict:", _HEAD)]
FUSED = """        loss = None
        if labels is not None:
            import adopt_kernels
            loss, lm_logits = adopt_kernels.linear_cross_entropy(hidden_states, self.lm_head, labels, shift=SHIFT, return_logits=True)
        else:
            lm_logits = self.lm_head(hidden_states)
"""


def run(tmp_path, text, target="gpt2:GPT2LMHeadModel"):
    path = tmp_path / "modeling_gpt2.py"
    path.write_text(text)
    p = subprocess.run([sys.executable, "-m", "adopt_harness.hf_lm_verify", f"{target}={path}"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    [r] = results(p.stdout.splitlines())
    return r


def fused(shift):
    assert SOURCE.count(HEAD_AND_LOSS) == 1
    assert "loss_fct(shift_logits" in HEAD_AND_LOSS
    return SOURCE.replace(HEAD_AND_LOSS, FUSED.replace("SHIFT", str(shift)))


def test_the_fused_head_and_loss_verify_on_the_lm_class_with_the_kernel_counted(tmp_path):
    r = run(tmp_path, fused(True))
    assert r["model"] == "gpt2" and r["class"] == "GPT2LMHeadModel" and r["status"] == "verified", r
    assert r["dtype"] == "float32"
    assert r["compiled_kernels"].get("linear_cross_entropy", 0) >= 2, r  # eval and train
    assert not r.get("notes")


def test_a_fused_loss_without_the_shift_is_a_mismatch(tmp_path):
    r = run(tmp_path, fused(False))
    assert r["status"] == "mismatch", r


def test_the_unchanged_code_verifies_but_says_the_kernel_did_not_run(tmp_path):
    r = run(tmp_path, SOURCE)
    assert r["status"] == "verified", r
    assert "linear_cross_entropy" not in r.get("compiled_kernels", {})
    assert any("did not run" in n for n in r["notes"]), r


def test_a_target_names_its_classes():
    assert parse_target("gpt2:GPT2LMHeadModel,GPT2DoubleHeadsModel=/x/m=1.py") == ("gpt2", "/x/m=1.py", ("GPT2LMHeadModel", "GPT2DoubleHeadsModel"))
    assert parse_target("bert=/x.py") == ("bert", "/x.py", ())


def test_classes_merge_into_one_result_where_any_mismatch_wins():
    a = {"status": "verified", "model": "m", "seconds": 1.0, "class": "A", "compiled_calls": 2, "compiled_kernels": {"linear_cross_entropy": 2}, "max_abs": 1e-6}
    b = {"status": "mismatch", "model": "m", "seconds": 2.0, "class": "B", "problems": ["train: logits differ"], "compiled_calls": 1, "compiled_kernels": {"linear_cross_entropy": 1}}
    c = {"status": "not_runnable", "model": "m", "seconds": 0.5, "reason": "no inputs"}
    r = merged([a, b, c], ("A", "B", "C"))
    assert r["status"] == "mismatch" and r["class"] == "A, B, C"
    assert r["problems"] == ["B: train: logits differ"] and r["notes"] == ["C: not runnable: no inputs"]
    assert r["compiled_kernels"] == {"linear_cross_entropy": 3} and r["compiled_calls"] == 3 and r["seconds"] == 3.5
    assert merged([a, c], ("A", "C"))["status"] == "verified"
    assert merged([c, dict(c)], ("C", "D"))["status"] == "not_runnable"


class Seq2SeqForConditionalGeneration:
    pass


class GPT2DoubleHeadsModel:
    pass


def test_labels_follow_the_decoder_ids_of_a_sequence_to_sequence_model():
    inputs = {"input_ids": torch.ones(2, 7, dtype=torch.long), "decoder_input_ids": torch.full((2, 5), 3)}
    labels = add_lm_labels(Seq2SeqForConditionalGeneration, {"labels": None}, inputs)["labels"]
    assert labels.shape == (2, 5) and labels[0, 1] == -100 and (labels[1] == 3).all()


def test_a_class_named_for_its_rewritten_head_is_labelled_whatever_its_name():
    params = {"labels": None}
    assert "labels" not in add_lm_labels(GPT2DoubleHeadsModel, params, {"input_ids": torch.ones(1, 4, dtype=torch.long)})
    LABELLED.add("GPT2DoubleHeadsModel")
    try:
        assert "labels" in add_lm_labels(GPT2DoubleHeadsModel, params, {"input_ids": torch.ones(1, 4, dtype=torch.long)})
    finally:
        LABELLED.discard("GPT2DoubleHeadsModel")
