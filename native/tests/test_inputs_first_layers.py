"""What the input finder feeds a block from the layer its forward hands each input to: a norm over
channels (GroupNorm, InstanceNorm, BatchNorm1d/3d), a transposed or 3-D convolution, a LayerNorm
over a channels-last image; and further inputs (a time embedding, integer timesteps, class labels)
by the layer or function each is first given to."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adopt_harness.inputs import feeds, find_inputs


def sinusoid(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype if t.is_floating_point() else torch.float64) / half)
    args = t[:, None].to(freqs.dtype) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class NormFirstBlock(nn.Module):
    """GroupNorm over an image, then attention over its pixels as tokens (a Linear on channels),
    as a latent-diffusion attention block does."""

    def __init__(self, ch=16):
        super().__init__()
        self.norm = nn.GroupNorm(4, ch)
        self.to_qkv = nn.Linear(ch, 3 * ch)

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        q, k, v = self.to_qkv(tokens).chunk(3, dim=-1)
        out = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1) @ v
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class NormFirstSignal(nn.Module):
    def __init__(self, ch=12):
        super().__init__()
        self.norm = nn.GroupNorm(3, ch)
        self.mix = nn.Linear(ch, ch)

    def forward(self, x):
        return x + self.mix(self.norm(x).transpose(1, 2)).transpose(1, 2)


class InstanceNormFirst(nn.Module):
    def __init__(self, ch=6):
        super().__init__()
        self.norm = nn.InstanceNorm2d(ch, affine=True)
        self.head = nn.Linear(ch, 4)

    def forward(self, x):
        return self.head(self.norm(x).amax(dim=(2, 3)))


class FeatureNorm(nn.Module):
    """BatchNorm1d over (batch, features), then a classifier."""

    def __init__(self, features=10):
        super().__init__()
        self.bn = nn.BatchNorm1d(features)
        self.fc = nn.Linear(features, 3)

    def forward(self, x):
        return self.fc(self.bn(x))


class VolumeNorm(nn.Module):
    def __init__(self, ch=5):
        super().__init__()
        self.bn = nn.BatchNorm3d(ch)
        self.head = nn.Linear(ch, 2)

    def forward(self, x):
        return self.head(self.bn(x).mean(dim=(2, 3, 4)))


class Upsampler(nn.Module):
    def __init__(self, ch=6):
        super().__init__()
        self.up = nn.ConvTranspose2d(ch, 3, 2, stride=2)

    def forward(self, x):
        return torch.tanh(self.up(x))


class ChannelsLastBlock(nn.Module):
    """A norm over the channels of a (batch, height, width, channels) image, as ConvNeXt keeps it."""

    def __init__(self, dim=12):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x):
        h = self.norm(x).permute(0, 3, 1, 2)
        return x + self.dw(h).permute(0, 2, 3, 1)


class TimeResBlock(nn.Module):
    """forward(x, temb): the time embedding is projected by a Linear and added per channel."""

    def __init__(self, ch=8, temb_ch=20):
        super().__init__()
        self.norm = nn.GroupNorm(4, ch)
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, ch)

    def forward(self, x, temb):
        h = self.conv(F.silu(self.norm(x)))
        return x + h + self.temb_proj(F.silu(temb))[:, :, None, None]


class Denoiser(nn.Module):
    """forward(x, t) with integer timesteps through a sinusoidal function of this file; the time
    MLP is registered before the image layers, as many UNets write it."""

    def __init__(self, ch=8, temb_ch=16):
        super().__init__()
        self.temb_ch = temb_ch
        self.time_mlp = nn.Sequential(nn.Linear(temb_ch, temb_ch), nn.SiLU())
        self.blocks = nn.ModuleList([TimeResBlock(ch, temb_ch), TimeResBlock(ch, temb_ch)])

    def forward(self, x, t):
        temb = self.time_mlp(sinusoid(t, self.temb_ch))
        for block in self.blocks:
            x = block(x, temb)
        return x


class ClassConditioned(nn.Module):
    """forward(x, y): class labels looked up in an embedding."""

    def __init__(self, dim=16, num_classes=5):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.label_emb = nn.Embedding(num_classes, dim)

    def forward(self, x, y):
        return self.proj(x) + self.label_emb(y)[:, None, :]


class WindowTokens(nn.Module):
    """Tokens of a 4 x 4 window: only 16 of them fit its position table."""

    def __init__(self, dim=8, window=4):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(window * window, window * window))
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return torch.softmax(q @ k.transpose(-2, -1) + self.bias, dim=-1) @ v


def _fed(model):
    torch.manual_seed(0)
    args, label = find_inputs(model.double(), None, torch.float64)
    return args, label


@pytest.mark.parametrize("cls, shape, label", [
    (NormFirstBlock, (2, 16, 16, 16), "image"),
    (NormFirstSignal, (2, 12, 16), "signal"),
    (InstanceNormFirst, (2, 6, 16, 16), "image"),
    (FeatureNorm, (2, 10), "float(2,10)"),
    (VolumeNorm, (2, 5, 4, 16, 16), "video"),
    (Upsampler, (2, 6, 16, 16), "image"),
    (ChannelsLastBlock, (2, 8, 8, 12), "image(2,8,8,12)"),
    (WindowTokens, (2, 16, 8), "float(2,16,8)"),
])
def test_the_first_layer_says_what_the_input_is(cls, shape, label):
    args, found = _fed(cls())
    assert found == label
    assert [tuple(a.shape) for a in args] == [shape]


def test_a_second_input_gets_what_the_linear_it_is_handed_to_takes():
    model = TimeResBlock()
    assert feeds(model, "temb")[1] is model.temb_proj
    args, label = _fed(model)
    assert [tuple(a.shape) for a in args] == [(2, 8, 16, 16), (2, 20)]
    assert label == "image + (2, 20)"


def test_timesteps_handed_to_a_function_of_the_file_are_integers_and_the_image_follows_the_blocks():
    model = Denoiser()
    assert feeds(model, "t") == ("function", sinusoid)
    # the image goes to the blocks' GroupNorm, though the time MLP's Linear is registered first
    assert isinstance(feeds(model, "x")[1], nn.GroupNorm)
    args, label = _fed(model)
    assert tuple(args[0].shape) == (2, 8, 16, 16)
    assert tuple(args[1].shape) == (2,) and args[1].dtype == torch.int64
    assert label == "image + (2,)"


def test_class_labels_handed_to_an_embedding_are_ids_within_it():
    args, _ = _fed(ClassConditioned())
    assert tuple(args[1].shape) == (2,) and args[1].dtype == torch.int64 and int(args[1].max()) < 5


def test_a_caller_shape_is_the_only_first_input_tried():
    args, label = find_inputs(WindowTokens().double(), None, torch.float64, shape=(3, 16, 8))
    assert label == "shape(3,16,8)" and tuple(args[0].shape) == (3, 16, 8)
    with pytest.raises(RuntimeError, match=r"shape\(2,7,8\)"):
        find_inputs(WindowTokens().double(), None, torch.float64, shape=(2, 7, 8))
