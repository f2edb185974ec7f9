"""Building a class the size table breaks (a bottleneck whose residual needs
`planes * expansion == inplanes`), a class whose own code fixes float32, a caller's input shape
(`--shape NAME=...`), and reasons that are cut only at a word, with an ellipsis."""
import re
import textwrap

import pytest

from adopt_harness.build import MAX_DEFAULT_SIZE, size_plans
from adopt_harness.text import clip, first_line
from test_verify_file import run

BOTTLENECK = textwrap.dedent('''
    import torch
    from torch import nn


    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes=64, planes=16, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * self.expansion)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = torch.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return torch.relu(out + x)
''')


def test_a_bottleneck_is_built_at_its_own_widths_scaled_together(tmp_path):
    r = run(tmp_path, BOTTLENECK, BOTTLENECK.replace("torch.relu(out + x)", "torch.relu(x + out)"))["Bottleneck"]
    assert r["status"] == "verified", r
    assert any(n.startswith("built at its own widths over 2 (inplanes=32, planes=8)") for n in r["notes"])


def test_a_wrong_rewrite_of_such_a_bottleneck_is_still_a_mismatch(tmp_path):
    r = run(tmp_path, BOTTLENECK, BOTTLENECK.replace("torch.relu(out + x)", "torch.relu(out - x)"))["Bottleneck"]
    assert r["status"] == "mismatch"


class _Module:
    pass


def _module_with(source):
    ns = {}
    exec(textwrap.dedent(source), ns)
    m = _Module()
    for k, v in ns.items():
        setattr(m, k, v)
    return m


def test_size_plans_scale_widths_only_and_skip_large_defaults():
    m = _module_with('''
        from torch import nn

        class Small(nn.Module):
            def __init__(self, dim=96, mlp_dim=192, heads=6, num_classes=100):
                super().__init__()

        class Large(nn.Module):
            def __init__(self, dim=768, heads=12):
                super().__init__()
    ''')
    plans = [(d.split(" (")[0], s) for d, s in size_plans(m, "Small", {})]
    assert [d for d, _ in plans] == ["the size table", "its own widths over 3", "its own defaults"]
    # widths over one factor, so dim:mlp_dim stays 1:2; heads and classes keep the table's
    assert plans[1][1] == {"dim": 32, "mlp_dim": 64}
    assert plans[2][1] == {"dim": 96, "mlp_dim": 192, "heads": 6, "num_classes": 100}
    # 768 is over what a check builds at its own defaults
    assert max(768, 12) > MAX_DEFAULT_SIZE
    assert [d.split(" (")[0] for d, _ in size_plans(m, "Large", {})] == ["the size table", "its own widths over 24"]
    # what the caller sets is never changed by a plan
    assert all("dim" not in (s or {}) for _, s in size_plans(m, "Small", {"dim": 64}))


FLOAT32_TIME = textwrap.dedent('''
    import math
    import torch
    from torch import nn


    def timestep_embedding(t, dim):
        half = dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


    class TimeBlock(nn.Module):
        def __init__(self, ch=8, temb_ch=16):
            super().__init__()
            self.temb_ch = temb_ch
            self.norm = nn.GroupNorm(4, ch)
            self.conv = nn.Conv2d(ch, ch, 3, padding=1)
            self.temb_proj = nn.Linear(temb_ch, ch)

        def forward(self, x, t):
            temb = timestep_embedding(t, self.temb_ch)
            h = self.conv(torch.nn.functional.silu(self.norm(x)))
            return torch.softmax(h + self.temb_proj(temb)[:, :, None, None], dim=1)
''')


def test_a_class_whose_own_code_fixes_float32_is_compared_in_float32(tmp_path):
    r = run(tmp_path, FLOAT32_TIME, FLOAT32_TIME.replace("dim=1)", "1)"))["TimeBlock"]
    assert r["status"] == "verified", r
    assert r["dtype"] == "fp32" and r["inputs"] == "image + (2,)"
    assert any(n.startswith("compared in float32: the original does not run in float64") for n in r["notes"])
    wrong = run(tmp_path, FLOAT32_TIME, FLOAT32_TIME.replace("dim=1)", "dim=2)"))["TimeBlock"]
    assert wrong["status"] == "mismatch"


WINDOW = textwrap.dedent('''
    import torch
    from torch import nn


    class Window(nn.Module):
        """Tokens of a 7 x 7 window only."""

        def __init__(self, dim=32, window=7):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(window * window, window * window))
            self.qkv = nn.Linear(dim, 3 * dim)
            self.norm = nn.LayerNorm(dim)

        def forward(self, x):
            q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
            return torch.softmax(q @ k.transpose(-2, -1) + self.bias, dim=-1) @ v
''')


def test_a_caller_shape_feeds_a_class_nothing_else_fits(tmp_path):
    rewritten = WINDOW.replace("dim=-1) @ v", "-1) @ v")
    r = run(tmp_path, WINDOW, rewritten)["Window"]
    assert r["status"] == "not_runnable"
    r = run(tmp_path, WINDOW, rewritten, "--shape", "Window=2,49,32")["Window"]
    assert r["status"] == "verified" and r["inputs"] == "shape(2,49,32)"


def test_a_reason_names_each_try_by_its_whole_first_line_and_is_cut_only_at_a_word(tmp_path):
    r = run(tmp_path, WINDOW, WINDOW)["Window"]
    reason = r["reason"]
    # the norm's message in full, which a cut at 80 characters used to end mid-word
    assert "expected input with shape [*, 32], but got input of size" in reason
    for part in re.split(r"; (?=[\w(]+[^;]*: \w+Error)", reason):
        assert part.endswith(("…", ")", "]")) or re.search(r"\w$", part), part


def test_clip_cuts_at_a_word_with_an_ellipsis():
    text = "Given normalized_shape=[32], expected input with shape [*, 32], but got input of size[2, 7, 96]"
    assert clip(text, 200) == text
    short = clip(text, 60)
    assert len(short) <= 60 and short.endswith("…")
    kept = short[:-1]
    assert text.startswith(kept) and not text[len(kept)].isalnum()  # the word it ends with is whole
    assert clip("x" * 50, 10) == "x" * 9 + "…"  # one word longer than the limit: cut inside it


def test_first_line_keeps_the_type_and_the_first_line_only():
    e = RuntimeError("shape '[7, 7, -1]' is invalid for input of size 1024\nException raised from at::native::view")
    assert first_line(e) == "RuntimeError: shape '[7, 7, -1]' is invalid for input of size 1024"
    assert first_line(ValueError()) == "ValueError"


@pytest.mark.parametrize("limit", [5, 12, 40])
def test_clip_never_exceeds_its_limit(limit):
    assert len(clip("a fairly long sentence with words of several lengths", limit)) <= limit
