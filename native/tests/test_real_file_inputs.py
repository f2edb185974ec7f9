"""Building and feeding the classes of current model code (bench:real's files): a constructor hidden
by a class decorator, a layer index, a norm that holds only its weight, a layer that takes the
rotary table from its caller; and the warm interpreter importing the files it will check."""
import io
import os
import sys
import textwrap
from contextlib import redirect_stdout

import pytest
import torch
from torch import nn

from adopt_harness.build import constructor_kwargs, init_signature
from adopt_harness.forkserver import preload_files
from adopt_harness.inputs import find_inputs
from adopt_harness.sizes import CONFIG_SIZES


class Config:
    def __init__(self):
        self.hidden_size, self.num_attention_heads, self.head_dim = 32, 4, 8


def hide_init(cls):
    """A class decorator that wraps __init__ the way the `kernels` package does (no functools.wraps)."""
    orig_init = cls.__init__

    def new_init(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        self.wrapped = True

    cls.__init__ = new_init
    return cls


@hide_init
class Attention(nn.Module):
    def __init__(self, config: Config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.q = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states, position_embeddings: tuple, attention_mask: torch.Tensor | None, cache=None):
        cos, sin = position_embeddings
        b, t, _ = hidden_states.shape
        q = self.q(hidden_states).view(b, t, 4, 8).transpose(1, 2)
        q = q * cos.unsqueeze(1) + q.flip(-1) * sin.unsqueeze(1)
        if attention_mask is not None:
            q = q + attention_mask
        return q.transpose(1, 2).reshape(b, t, 32)


class Layer(nn.Module):
    def __init__(self, config: Config, layer_idx: int):
        super().__init__()
        self.attn = Attention(config, layer_idx)

    def forward(self, hidden_states, attention_mask=None, position_ids=None, use_cache=False, position_embeddings: tuple | None = None):
        return hidden_states + self.attn(hidden_states, position_embeddings, attention_mask)


class RMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def module_of(*classes):
    m = type(sys)("m")
    for c in classes:
        setattr(m, c.__name__, c)
    m.Config = Config
    return m


def test_a_constructor_wrapped_by_a_class_decorator_is_read_through_the_wrapper():
    assert list(init_signature(Attention).parameters) == ["self", "config", "layer_idx"]
    kwargs = constructor_kwargs(module_of(Attention), "Attention", {})
    assert set(kwargs) == {"config", "layer_idx"} and kwargs["layer_idx"] == 0
    built = Attention(**kwargs)
    assert built.wrapped and built.layer_idx == 0


def test_a_norm_holding_only_its_weight_is_fed_its_width():
    norm = RMSNorm(CONFIG_SIZES["hidden_size"]).double()
    args, label = find_inputs(norm, None, torch.float64)
    assert label == f"float(2,7,{CONFIG_SIZES['hidden_size']})"
    assert args[0].shape == (2, 7, CONFIG_SIZES["hidden_size"])


@pytest.mark.parametrize("cls", [Attention, Layer])
def test_a_layer_given_the_rotary_table_by_its_caller_gets_a_cos_sin_pair(cls):
    config = Config()
    torch.manual_seed(0)
    model = cls(config, 0).double()
    args, label = find_inputs(model, config, torch.float64)
    table = args[list(model.forward.__code__.co_varnames[1:]).index("position_embeddings")]
    assert isinstance(table, tuple) and [t.shape for t in table] == [(2, 7, 8), (2, 7, 8)]
    assert "((2, 7, 8), (2, 7, 8))" in label
    with torch.no_grad():
        assert model(*args).shape == (2, 7, 32)


def test_the_warm_interpreter_imports_files_as_originals_and_keeps_its_search_path(tmp_path):
    pkg = tmp_path / "preloadpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(textwrap.dedent("""\
        print("imported")
        from . import helper
        VALUE = helper.VALUE
    """))
    (pkg / "helper.py").write_text("VALUE = 7\n")
    (pkg / "broken.py").write_text("raise ImportError('needs a package that is not installed')\n")
    before = list(sys.path)
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out):
            sys.stderr, saved = err, sys.stderr
            try:
                preload_files([str(pkg / "model.py"), str(pkg / "broken.py")])
            finally:
                sys.stderr = saved
        assert sys.modules["preloadpkg.model"].VALUE == 7
        assert os.path.dirname(sys.modules["preloadpkg.model"].__file__) == str(pkg)
        assert sys.path == before
        # stdout is the server's `ready` line alone: what a module prints goes to stderr
        assert out.getvalue() == ""
        assert "imported" in err.getvalue()
        assert f"{pkg / 'broken.py'} not preloaded: ImportError: needs a package" in err.getvalue()
    finally:
        for name in [n for n in sys.modules if n.startswith("preloadpkg")]:
            del sys.modules[name]
        sys.path[:] = before


# ---------------------------------------------------------------- configs and inputs of current model code

def test_a_list_with_one_entry_per_layer_is_cut_with_the_layer_count():
    from adopt_harness.hf_inputs import shrink_dict

    d = {"num_hidden_layers": 32, "hidden_size": 4096, "layer_types": ["sliding_attention", "full_attention"] * 16, "long_factor": [1.0] * 32}
    shrunk = shrink_dict(d, 0)
    assert shrunk["num_hidden_layers"] == 2
    assert shrunk["layer_types"] == ["sliding_attention", "full_attention"]
    assert shrunk["long_factor"] == [1.0] * 32  # as long, but not named per layer: kept


class VisionConfig:
    def __init__(self):
        self.hidden_size, self.image_size = 32, 48


class TextConfig:
    def __init__(self):
        self.hidden_size, self.vocab_size = 32, 99


class BothConfig:
    def __init__(self):
        self.text_config, self.vision_config = TextConfig(), VisionConfig()


class SharedLayer(nn.Module):
    def __init__(self, config: VisionConfig | TextConfig):
        super().__init__()
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x):
        return self.proj(x)


def test_a_layer_annotated_with_a_union_of_configs_gets_one_of_them_not_another_config_of_the_file():
    m = type(sys)("m")
    m.BothConfig, m.VisionConfig, m.TextConfig, m.SharedLayer = BothConfig, VisionConfig, TextConfig, SharedLayer
    config = constructor_kwargs(m, "SharedLayer", {})["config"]
    assert type(config) in (VisionConfig, TextConfig)


class PatchEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.image_size = config.image_size
        self.proj = nn.Conv2d(3, config.hidden_size, 16, 16)

    def forward(self, pixel_values):
        if pixel_values.shape[-1] != self.image_size:
            raise ValueError(f"Input image size ({pixel_values.shape[-1]}) doesn't match model ({self.image_size}).")
        return self.proj(pixel_values).flatten(2).transpose(1, 2)


class Embeddings(nn.Module):
    def __init__(self, vocab_size=99, hidden_size=32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden_size)

    def forward(self, input_ids=None, inputs_embeds=None):
        return self.embed(input_ids) if inputs_embeds is None else inputs_embeds


def test_a_patch_embedding_is_fed_images_of_the_size_its_config_says():
    config = VisionConfig()
    args, label = find_inputs(PatchEmbeddings(config).double(), config, torch.float64)
    assert label == "image48" and args[0].shape == (2, 3, 48, 48)


def test_an_embedding_whose_inputs_are_all_optional_is_fed_its_first():
    args, label = find_inputs(Embeddings(), None, torch.float64)
    assert label == "ids" and args[0].dtype == torch.long


class WeightlessNorm(nn.Module):
    """OLMo's LayerNorm: no parameters, no submodules; only its constructor says its width."""

    def __init__(self, hidden_size):
        super().__init__()
        self.normalized_shape = (hidden_size,)

    def forward(self, x):
        return nn.functional.layer_norm(x, self.normalized_shape, None, None, eps=1e-5)


def test_a_class_built_from_sizes_alone_is_fed_by_those_sizes():
    from adopt_harness.verify_file import check_class

    m = module_of(WeightlessNorm)
    r = check_class(m, m, "WeightlessNorm", {}, torch.float64, 0)
    assert r["status"] == "verified", r
    assert r["inputs"] == f"float(2,7,{CONFIG_SIZES['hidden_size']})"


class TimmBlock(nn.Module):
    def __init__(self, in_chs, out_chs, dim_in, dim_out, mult, cross_attention_dim):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 1)
        self.ff = nn.Linear(dim_in, dim_out * mult)
        self.kv = nn.Linear(cross_attention_dim, dim_out)


def test_the_size_table_knows_the_spellings_of_current_vision_and_diffusion_code():
    kwargs = constructor_kwargs(module_of(TimmBlock), "TimmBlock", {})
    assert set(kwargs) == {"in_chs", "out_chs", "dim_in", "dim_out", "mult", "cross_attention_dim"}
    TimmBlock(**kwargs)
