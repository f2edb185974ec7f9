"""The file-mode harness on a transformers modeling file (BERT, from the transformers 4.35.0 that
scripts/setup-python.sh --hf installs): its model classes take keyword inputs the size table cannot
guess, so the file run checks the model as hf_verify does (the bare model from the family's shrunk
config, inputs from its forward signature), and its other classes one by one as before."""
import os
import subprocess
import sys

NATIVE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import transformers.models.bert.modeling_bert as bert  # noqa: E402  (installed by setup-python.sh --hf)

from adopt_harness.protocol import results  # noqa: E402

SOURCE = open(bert.__file__).read()


def run(tmp_path, text):
    path = tmp_path / "modeling_bert.py"
    path.write_text(text)
    p = subprocess.run([sys.executable, "-m", "adopt_harness.verify_file", bert.__file__, "--variant", f"v={path}", "--classes", "BertModel,BertForMaskedLM,BertSelfOutput"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    [out] = results(p.stdout.splitlines())
    return out["results"]


def test_the_model_is_checked_from_its_config_and_forward_signature(tmp_path):
    found = run(tmp_path, SOURCE)
    [model] = [r for r in found if r.get("model")]
    assert model["model"] == "modeling_bert" and model["class"] == "BertModel", model
    assert model["status"] == "verified" and model["strict_load"] is True, model
    # the model classes are covered by the model check; a building block is still checked alone
    assert sorted(r["class"] for r in found) == ["BertModel", "BertSelfOutput"]
    assert next(r for r in found if r["class"] == "BertSelfOutput")["status"] == "verified"


def test_a_wrong_softmax_in_the_model_is_a_mismatch(tmp_path):
    wrong = SOURCE.replace("attention_probs = nn.functional.softmax(attention_scores, dim=-1)",
                           "attention_probs = nn.functional.softmax(attention_scores, dim=-2)")
    assert wrong != SOURCE
    [model] = [r for r in run(tmp_path, wrong) if r.get("model")]
    assert model["status"] == "mismatch", model
    assert any("output" in p or "grad" in p for p in model["problems"])
