"""A rewritten file whose package registers its names at import (torchvision's register_model,
which refuses a name twice) is loaded beside its original and checked like any other file."""
import os
import shutil
import subprocess
import sys
import textwrap

from adopt_harness.protocol import results
from test_verify_file import GOOD

NATIVE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

API = textwrap.dedent('''
    BUILTIN_MODELS = {}


    def register_model(name=None):
        def wrapper(fn):
            key = name if name is not None else fn.__name__
            if key in BUILTIN_MODELS:
                raise ValueError(f"An entry is already registered under the name '{key}'.")
            BUILTIN_MODELS[key] = fn
            return fn
        return wrapper
''')

# torchvision's shape: the model module registers a builder of its class by name
NET = GOOD.replace("from torch import nn\n", "from torch import nn\n\nfrom ._api import register_model\n") + textwrap.dedent('''


    @register_model()
    def net():
        return Block()
''')

SAME = NET.replace("torch.softmax(self.proj(x), dim=-1)", "nn.functional.softmax(self.proj(x), -1)")
WRONG = NET.replace("dim=-1", "dim=-2")


def make_package(root, net_text=NET):
    models = root / "fakevision" / "models"
    models.mkdir(parents=True)
    (root / "fakevision" / "__init__.py").write_text("from . import models\n")
    (models / "__init__.py").write_text("from .net import *\n")
    (models / "_api.py").write_text(API)
    (models / "net.py").write_text(net_text)
    return models / "net.py"


def verify(original, rewritten, *extra):
    env = {**os.environ, "PYTHONPATH": NATIVE}
    p = subprocess.run([sys.executable, "-m", "adopt_harness.verify_file", str(original), "--variant", f"v={rewritten}", *extra],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    [out] = results(p.stdout.splitlines())
    return {r.get("class"): r for r in out["results"]}


def test_a_rewrite_beside_its_original_registers_again_without_colliding(tmp_path):
    original = make_package(tmp_path / "pkg")
    rewritten = tmp_path / "net_rewritten.py"
    rewritten.write_text(SAME)
    r = verify(original, rewritten)
    assert r["Block"]["status"] == "verified", r
    assert None not in r  # the rewrite imported


def test_the_check_stays_real_a_wrong_rewrite_in_such_a_package_is_a_mismatch(tmp_path):
    original = make_package(tmp_path / "pkg")
    rewritten = tmp_path / "net_rewritten.py"
    rewritten.write_text(WRONG)
    r = verify(original, rewritten)
    assert r["Block"]["status"] == "mismatch"
    assert any(p.startswith("eval output 0") for p in r["Block"]["problems"])


def test_a_rewrite_in_a_renamed_copy_of_the_package_imports_once_more_without_colliding(tmp_path):
    original = make_package(tmp_path / "pkg")
    copy = tmp_path / "copy" / "adopt_rewritten_fakevision"
    shutil.copytree(tmp_path / "pkg" / "fakevision", copy)
    (copy / "models" / "net.py").write_text(SAME)
    r = verify(original, copy / "models" / "net.py", "--own-package")
    assert r["Block"]["status"] == "verified", r


def test_registries_are_restored_exactly_after_the_rewrite_is_imported(tmp_path):
    original = make_package(tmp_path / "pkg")
    rewritten = tmp_path / "net_rewritten.py"
    rewritten.write_text(SAME)
    code = textwrap.dedent(f'''
        from adopt_harness.build import load
        a = load({str(original)!r}, True)
        b = load({str(rewritten)!r}, False, package_from={str(original)!r})
        from fakevision.models._api import BUILTIN_MODELS
        assert b.net is not a.net and b.Block is not a.Block
        assert BUILTIN_MODELS == {{"net": a.net}}, BUILTIN_MODELS
        print("ok")
    ''')
    env = {**os.environ, "PYTHONPATH": NATIVE}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


# the rewrite's import reaches a module of the package nothing had imported: it registers a model
# of its own, which is no trace of the rewrite and must stay; the rewrite's registration of a
# name the original does not have must not
EXTRA = textwrap.dedent('''
    from torch import nn

    from ._api import register_model


    @register_model()
    def extra_net():
        return nn.Identity()
''')

REACHING = SAME.replace("from ._api import register_model\n", "from ._api import register_model\nfrom . import extra  # noqa: F401\n") + textwrap.dedent('''


    @register_model()
    def net_of_the_rewrite():
        return Block()
''')


def test_an_entry_added_during_the_rewrites_import_survives_the_restore(tmp_path):
    original = make_package(tmp_path / "pkg")
    (original.parent / "extra.py").write_text(EXTRA)
    rewritten = tmp_path / "net_rewritten.py"
    rewritten.write_text(REACHING)
    code = textwrap.dedent(f'''
        import sys
        from adopt_harness.build import load
        a = load({str(original)!r}, True)
        from fakevision.models._api import BUILTIN_MODELS
        assert "fakevision.models.extra" not in sys.modules and set(BUILTIN_MODELS) == {{"net"}}
        b = load({str(rewritten)!r}, False, package_from={str(original)!r})
        extra = sys.modules["fakevision.models.extra"]
        assert b.net is not a.net and b.net_of_the_rewrite
        assert BUILTIN_MODELS == {{"net": a.net, "extra_net": extra.extra_net}}, BUILTIN_MODELS
        print("ok")
    ''')
    env = {**os.environ, "PYTHONPATH": NATIVE}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
