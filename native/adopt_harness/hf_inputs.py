"""Tiny configs, model classes and inputs for verifying transformers models (see hf_verify.py).

A config is shrunk as a dict and rebuilt through its config class, so values a config derives in
its constructor (a Swin stage width, a Q-Former's encoder width, a default backbone) stay
consistent with the sizes set here. `ladder` yields the shrinks from the most aggressive to the
mildest; the caller takes the first one the original model runs with.
"""
import inspect
import math

import torch

from adopt_harness.lm_labels import add_lm_labels
from adopt_harness.dropout import DROPOUT_WORDS
from adopt_harness.sizes import CONFIG_SIZES as SMALL  # the one size table

# Layer counts: reduced on every rung of the ladder (fewer layers seldom break a model).
LAYERS = {k: v for k, v in SMALL.items() if v == 2 and "layers" in k or k in ("n_layer",)}
LAYERS.update({
    "l_layers": 2, "x_layers": 1, "r_layers": 1, "num_self_attends_per_block": 2, "mit_num_hidden_layers": 1,
    "decoder_num_hidden_layers": 1, "text_encoder_num_layers": 2, "speech_decoder_postnet_layers": 2,
    "prior_encoder_num_wavenet_layers": 2, "posterior_encoder_num_wavenet_layers": 2, "duration_predictor_num_flows": 2,
    "prior_encoder_num_flows": 2, "depth_separable_num_layers": 2, "num_meta3d_blocks": 1, "query_dec_layers": 1,
})
# Widths: set on the aggressive rungs only.
WIDTHS = {k: v for k, v in SMALL.items() if k not in LAYERS}
WIDTHS.update({
    "embedding_dim": 32, "ffn_embedding_dim": 37, "decoder_vocab_size": 99, "input_vocab_size": 99, "output_vocab_size": 99,
    "decoder_hidden_size": 32, "decoder_intermediate_size": 37, "decoder_num_attention_heads": 4,
    "mit_hidden_size": 32, "mit_intermediate_size": 37, "mit_num_attention_heads": 4, "prompt_num_attention_heads": 4,
    "encoder_ffn_embed_dim": 37, "d_inner": 37, "d_head": 8, "d_latents": 32,
    "num_self_attention_heads": 4, "num_cross_attention_heads": 4, "word_embed_proj_dim": 32,
    "mask_feature_size": 32, "fpn_feature_size": 32, "hidden_dim": 32, "conv_dim": 32, "mask_dim": 32,
    "encoder_feedforward_dim": 37, "dim_feedforward": 37, "text_encoder_width": 32, "num_queries": 8,
    "num_latents": 8, "output_channels": 32, "mlp_dim": 37, "iou_head_hidden_dim": 32, "entity_vocab_size": 99,
})
# Sizes of the inputs (pixels, frames, audio): set on the most aggressive rung only.
IMAGE_KEYS = ("image_size", "img_size")
TOKEN_ID_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "sep_token_id", "mask_token_id", "cls_token_id", "unk_token_id")
HEAD_KEYS = ("num_heads", "num_attention_heads")
STAGE_WIDTH_KEYS = ("hidden_sizes", "embed_dims", "embed_dim", "dims", "hidden_dims", "channels")
DEPTH_KEYS = ("depths", "depth", "num_block_repeats", "block_sizes", "block_repeats")
RUNGS = ("tiny", "tiny widths, default input sizes", "default widths, fewer layers")


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_config_dict(v):
    return isinstance(v, dict) and "model_type" in v


def _round_up(x, m):
    return int(math.ceil(x / m) * m)


def _shrink_lists(d, original):
    """Per-stage lists: at most two blocks a stage, widths scaled down with the first stage's and
    kept divisible by the stage's heads."""
    heads = next((d[k] for k in HEAD_KEYS if isinstance(d.get(k), list) and d[k] and all(_int(h) for h in d[k])), None)
    for key in DEPTH_KEYS:
        v = d.get(key)
        if isinstance(v, list) and v and all(_int(x) for x in v):
            d[key] = [min(x, 2) for x in v]
            if original.get("num_hidden_layers") == sum(v):  # a layer count that is the sum of the stages' (GroupViT)
                d["num_hidden_layers"] = sum(d[key])
    for key in STAGE_WIDTH_KEYS:
        v = d.get(key)
        if isinstance(v, list) and v and all(_int(x) and x > 0 for x in v):
            f = max(1.0, v[0] / 16)
            if heads is not None and len(heads) == len(v):
                d[key] = [_round_up(max(x / f, 8 * h), 8 * h) for x, h in zip(v, heads)]
            else:
                d[key] = [_round_up(x / f, 8) for x in v]
        elif _int(v) and heads is not None and key == "embed_dim":
            # one width for the first stage, doubled per stage (Swin): heads must divide every stage
            d[key] = 8 * heads[0] if all((8 * heads[0] * 2 ** i) % h == 0 for i, h in enumerate(heads)) else v


def _per_layer_lists(d, original):
    """Lists with one entry per layer (`layer_types`: which layers attend in a sliding window) cut to
    the shrunk layer count: a config checks that the two agree and refuses the shrink otherwise."""
    for count in [k for k in LAYERS if _int(original.get(k)) and d.get(k) != original[k]]:
        for key, v in list(d.items()):
            if "layer" in key and isinstance(v, list) and len(v) == original[count]:
                d[key] = v[:d[count]]


def _shrink_inputs(d):
    """Images of four patches a side (64 pixels for small patches), at most four frames."""
    patch = d.get("patch_size")
    patch = max(patch) if isinstance(patch, (list, tuple)) and patch and all(_int(p) for p in patch) else patch
    for key in IMAGE_KEYS:
        v = d.get(key)
        side = (4 * patch if _int(patch) and patch >= 8 else 64)
        if _int(v) and v > side:
            d[key] = side
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(_int(x) for x in v) and max(v) > side:
            # keep the aspect ratio (a text-line recogniser's 32x128)
            r, p = side / max(v), patch if _int(patch) else 1
            d[key] = [max(p, _round_up(x * r, p)) for x in v]
    if _int(d.get("window_size")) and isinstance(d.get("depths"), list):
        # windowed stages (Swin): a window no larger than the last stage's resolution
        d["window_size"] = min(d["window_size"], 2)
    if _int(d.get("num_frames")) and d["num_frames"] > 4:
        d["num_frames"] = 4


def _fix_ids(d):
    # special tokens inside the shrunk vocabulary; equal ids stay equal (pad = decoder start)
    vocab = d.get("vocab_size")
    if not _int(vocab):
        return
    for key in TOKEN_ID_KEYS:
        if _int(d.get(key)) and d[key] >= vocab:
            d[key] = d[key] % vocab


def _fix_heads(d):
    # rotary embeddings on at most a whole head (CodeGen, GPT-J)
    rotary = d.get("rotary_dim")
    hidden = next((d[k] for k in ("hidden_size", "n_embd", "d_model") if _int(d.get(k))), None)
    heads = next((d[k] for k in ("num_attention_heads", "n_head", "num_heads") if _int(d.get(k))), None)
    if _int(rotary) and hidden and heads and rotary > hidden // heads:
        d["rotary_dim"] = hidden // heads


def _fix_structure(d):
    # the DETR family builds a transformers backbone instead of a timm one (timm is not installed)
    if d.get("use_timm_backbone") is True:
        d["use_timm_backbone"] = False
    if d.get("use_pretrained_backbone") is True:
        d["use_pretrained_backbone"] = False
    # two-stage DETA proposals need torchvision's NMS
    if d.get("model_type") == "deta" and d.get("two_stage"):
        d["two_stage"] = False
    if "vocab_size" in d and d["vocab_size"] is None and "vocab_list" in d:
        d.update(vocab_size=99, pad_token_id=1, mask_token_id=2)  # ESM: no tokenizer, no vocabulary
    if d.get("default_language", 1) is None and d.get("languages"):
        d["default_language"] = d["languages"][0]  # X-MOD
    if "prediction_length" in d and d["prediction_length"] is None:
        # time series: a short horizon, a short context, few lags, one time feature
        d.update(prediction_length=4, context_length=8, lags_sequence=[1, 2, 3], num_time_features=1)
        if "label_length" in d:
            d["label_length"] = 4
        if "moving_average" in d:
            d["moving_average"] = 3
    n = d.get("num_hidden_layers")
    if _int(n) and not isinstance(d.get("depths"), list) and (d.get("out_features") or d.get("out_indices")):
        # a backbone whose stages are its layers (ViTDet, DINOv2): out of range once the layers are fewer
        stages = [int(f[5:]) for f in d.get("out_features") or [] if f.startswith("stage")] + list(d.get("out_indices") or [])
        if any(i > n for i in stages):
            d.update(out_features=[f"stage{n}"], out_indices=None)
    groups = [d[k] for k in d if k.endswith("_groups") and _int(d[k]) and d[k] > 1]
    if groups and _int(d.get("intermediate_size")):
        m = math.lcm(*groups)
        d["intermediate_size"] = _round_up(d["intermediate_size"], m)


def shrink_dict(d, rung):
    """One rung of the ladder applied to a config dict (sub-config dicts included)."""
    original, d = d, dict(d)
    for key, v in list(d.items()):
        if _is_config_dict(v):
            d[key] = shrink_dict(v, rung)
        elif isinstance(v, list) and v and all(_is_config_dict(x) for x in v):
            d[key] = [shrink_dict(x, rung) for x in v]
        elif any(w in key for w in DROPOUT_WORDS) and (isinstance(v, float) or (_int(v) and v in (0, 1) and "prob" in key)):
            d[key] = 0.0
        elif any(w in key for w in DROPOUT_WORDS) and isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
            d[key] = [0.0 for _ in v]
        elif _int(v) and key in LAYERS:
            d[key] = min(v, LAYERS[key])
        elif _int(v) and rung < 2 and key in WIDTHS:
            d[key] = WIDTHS[key]
    _per_layer_lists(d, original)
    if rung < 2:
        _shrink_lists(d, original)
        if _int(d.get("head_dim")):
            d["head_dim"] = 8
    if rung == 0:
        _shrink_inputs(d)
    _fix_ids(d)
    _fix_heads(d)
    _fix_structure(d)
    special = SPECIAL_CONFIG.get(d.get("model_type"))
    if special:
        special(d, rung)
    return d


_GENERIC = None


def _prune(d, config):
    """Drop the values a config derives in its constructor (not its parameters), so that it derives them again
    from the shrunk sizes (a time-series feature size, a Swin stage width) instead of keeping stale ones."""
    global _GENERIC
    if _GENERIC is None:
        from transformers import PretrainedConfig
        _GENERIC = set(PretrainedConfig().to_dict()) | set(inspect.signature(PretrainedConfig.__init__).parameters)
    params = set()
    for klass in type(config).__mro__:
        if "__init__" in vars(klass):
            params |= set(inspect.signature(klass.__init__).parameters)
    for key in list(d):
        sub = getattr(config, key, None)
        if isinstance(d[key], dict) and hasattr(sub, "to_dict"):
            _prune(d[key], sub)
        elif key not in params and key not in _GENERIC and key != "model_type":
            del d[key]
    d.pop("transformers_version", None)
    return d


def tiny_config(config_class, rung):
    config = config_class()
    # twice: a constructor may create a default sub-config (a backbone) the first pass could not see
    for _ in range(2):
        config = config_class.from_dict(shrink_dict(_prune(config.to_dict(), config), rung))
    return config


def ladder(config_class):
    for rung, label in enumerate(RUNGS):
        try:
            yield label, tiny_config(config_class, rung), None
        except Exception as e:  # a shrink the config refuses: the next rung
            yield label, None, e


# ---------------------------------------------------------------- per-family config adjustments

def _sam(d, rung):
    v, p, m = d["vision_config"], d["prompt_encoder_config"], d["mask_decoder_config"]
    if rung == 0:
        # the prompt encoder's image embedding grid is the vision encoder's patch grid
        size = v["image_size"] = p["image_size"] = 64
        p["image_embedding_size"] = size // v["patch_size"]
        v.update(global_attn_indexes=[1], window_size=2)
    if rung < 2:
        # the image embeddings, the prompt embeddings and the mask decoder share one width
        v["output_channels"] = p["hidden_size"] = m["hidden_size"] = 32
        v["num_pos_feats"] = 16
        m["iou_head_hidden_dim"] = 32


def _reformer(d, rung):
    # fixed LSH rotations: otherwise every training-mode forward draws them from a fresh OS seed
    d["hash_seed"] = 0
    if rung < 2:
        d.update(axial_pos_shape=[4, 4], axial_pos_embds_dim=[16, d["hidden_size"] - 16], attention_head_size=8,
                 lsh_attn_chunk_length=4, local_attn_chunk_length=4, num_buckets=2, feed_forward_size=37,
                 max_position_embeddings=16, is_decoder=False)
    else:
        d["attn_layers"] = d["attn_layers"][:2]


def _graphormer(d, rung):
    d.update(num_atoms=32, num_in_degree=16, num_out_degree=16, num_edges=32, num_spatial=16, num_edge_dis=16, multi_hop_max_dist=3)


def _round_filters(d, channels):
    c = channels * d["width_coefficient"]
    return int(max(d["depth_divisor"], int(c + d["depth_divisor"] / 2) // d["depth_divisor"] * d["depth_divisor"]))


def _efficientnet(d, rung):
    if rung < 2:
        d.update(width_coefficient=0.25, depth_coefficient=1.0, num_block_repeats=[1] * len(d["num_block_repeats"]))
    # the top BatchNorm is sized by hidden_dim, the top conv by the rounded 1280 channels
    d["hidden_dim"] = _round_filters(d, 1280)


def _align(d, rung):
    # text and image embeddings meet in one space: the vision encoder's last width
    d["projection_dim"] = _round_filters(d["vision_config"], d["vision_config"]["out_channels"][-1])


def _bridgetower(d, rung):
    if rung < 2:
        d["vision_config"]["hidden_size"] = 64  # its attention has hidden_size // 64 heads


def _bros(d, rung):
    if rung < 2:
        d["hidden_size"] = 64  # bbox embeddings of hidden_size // 4 // dim_bbox (even) channels


def _ast(d, rung):
    if rung == 0:  # its position embeddings fix the input at max_length frames of num_mel_bins
        d.update(max_length=64, num_mel_bins=32)


def _efficientformer(d, rung):
    # the last stage is `dim` wide, and its attention biases are sized for image_size / 32 squared
    if rung < 2:
        d.update(hidden_sizes=[16, 16, 32, 32], dim=32, key_dim=8, num_attention_heads=2, depths=[1, 1, 1, 2], num_meta3d_blocks=1)
    if rung == 0:
        d.update(resolution=d["image_size"] // 32)


def _speech_to_text(d, rung):
    if rung < 2:  # the convolutional subsampler is 1024 channels wide by default
        d.update(conv_channels=16, input_feat_per_channel=16)


def _tvlt(d, rung):
    if rung == 0:  # its position embeddings fix the spectrogram size and the number of frames
        d.update(spectrogram_length=64, frequency_length=32, num_frames=2)


def _clap(d, rung):
    if rung < 2:
        # frequency bins per group (spec_size / 2**stages / patch stride) must reach spec_size / mel bins
        d["audio_config"].update(spec_size=64, num_mel_bins=32, window_size=2, patch_embeds_hidden_size=8,
                                 num_attention_heads=[1, 2, 4, 8], hidden_size=64)


def _x_clip(d, rung):
    if rung < 2:
        # the multi-frame integration transformer runs on the projected image embeddings
        d["projection_dim"] = d["vision_config"]["mit_hidden_size"] = 32


def _cvt(d, rung):
    if rung < 2:
        d["depth"] = [1, 2, 3]  # each stage indexes its drop-path schedule by the stage number


def _layoutlm_2d(d, rung):
    if rung < 2:
        # 2-D position embeddings: six equal parts (LiLT), or four coordinates and two shapes (LayoutLMv3)
        d["hidden_size"] = 48
        if "coordinate_size" in d:
            d.update(coordinate_size=8, shape_size=8)


def _upernet(d, rung):
    d["auxiliary_in_channels"] = d["backbone_config"]["hidden_sizes"][2]  # the auxiliary head reads the third stage


def _vit_hybrid(d, rung):
    b = d["backbone_config"]
    if rung < 2:
        b["num_groups"] = 4
    size = d["image_size"] if isinstance(d["image_size"], int) else d["image_size"][0]
    stage = int(b["out_features"][-1].replace("stage", "")) if b.get("out_features") else len(b["depths"])
    d["backbone_featmap_shape"] = [1, b["hidden_sizes"][stage - 1], size // 16, size // 16]


def _gpt_neo(d, rung):
    d["attention_types"] = [[["global", "local"], max(1, d["num_layers"] // 2)]]  # one type per layer


def _oneformer(d, rung):
    if rung < 2:
        d.update(text_encoder_width=32, text_encoder_vocab_size=99, task_seq_len=8, text_encoder_context_length=8, text_encoder_n_ctx=4)


def _vitmatte(d, rung):
    if rung < 2:
        d.update(convstream_hidden_sizes=[8, 16, 16], fusion_hidden_sizes=[16, 16, 8, 8])  # full-resolution convolutions


def _vits(d, rung):
    if rung < 2:
        # the waveform decoder and flows: a few narrow upsampling stages
        d.update(upsample_initial_channel=16, upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3],
                 resblock_dilation_sizes=[[1, 3]], flow_size=16, spectrogram_bins=17, duration_predictor_filter_channels=16)


def _swin2sr(d, rung):
    if rung == 0:
        d.update(image_size=16, depths=[2, 2], num_heads=[2, 2], embed_dim=16, window_size=4)  # no downsampling: every pixel a token


def _whisper(d, rung):
    if rung == 0:
        d.update(max_source_positions=16, num_mel_bins=16)  # the encoder takes exactly 2 * max_source_positions frames


def _big_bird(d, rung):
    if rung < 2:
        d.update(block_size=2, num_random_blocks=2)  # block-sparse attention on a short sequence (see make_inputs)


SPECIAL_CONFIG = {
    "big_bird": _big_bird, "bigbird_pegasus": _big_bird,
    "vits": _vits, "swin2sr": _swin2sr, "whisper": _whisper,
    "vitmatte": _vitmatte,
    "clap": _clap, "xclip": _x_clip, "cvt": _cvt, "lilt": _layoutlm_2d, "layoutlmv3": _layoutlm_2d, "upernet": _upernet,
    "vit-hybrid": _vit_hybrid, "gpt_neo": _gpt_neo, "oneformer": _oneformer,
    "sam": _sam, "reformer": _reformer, "graphormer": _graphormer, "efficientnet": _efficientnet,
    "align_vision_model": _efficientnet, "audio-spectrogram-transformer": _ast,
    "efficientformer": _efficientformer, "align": _align, "bridgetower": _bridgetower, "bros": _bros, "speech_to_text": _speech_to_text, "tvlt": _tvlt,
}


# ---------------------------------------------------------------- classes

def candidate_classes(module):
    """The module's model classes, the bare model first: *Model, then *Encoder/*Decoder, then the shortest name."""
    from torch import nn
    main = [obj.config_class for name, obj in vars(module).items()
            if name.endswith("PreTrainedModel") and inspect.isclass(obj) and getattr(obj, "config_class", None)]
    candidates = []
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__:
            if not name.endswith("PreTrainedModel") and getattr(obj, "config_class", None) is not None:
                rank = 0 if name.endswith("Model") else 1 if name.endswith(("Encoder", "Decoder")) else 2
                # a class of the family's own config (the whole model) before a sub-model's
                family = 0 if not main or obj.config_class in main else 1
                candidates.append((family, rank, len(name), name, obj))
    return [c[-1] for c in sorted(candidates)]


# ---------------------------------------------------------------- inputs

class NoInputs(Exception):
    """The harness does not know how to feed this class: try another class."""


def _sub(config, *names):
    for n in names:
        sub = getattr(config, n, None)
        if sub is not None and hasattr(sub, "to_dict"):
            return sub
    return config


def _size2(v, default=224):
    v = default if v is None else v
    return tuple(v[:2]) if isinstance(v, (list, tuple)) else (v, v)


# Bare models without a pre-net: their "input values" are hidden states.
HIDDEN_STATE_INPUTS = {"SpeechT5Model": "input_values"}


def make_inputs(cls, config, batch=2, seq=7):
    if cls.forward is torch.nn.Module.forward:
        raise NoInputs(f"{cls.__name__} has no forward of its own (a sampling-only model)")
    params = inspect.signature(cls.forward).parameters
    inputs = {}
    vision = _sub(config, "vision_config")
    text = _sub(config, "text_config")
    vocab = getattr(text, "vocab_size", None) or getattr(text, "input_vocab_size", None) or 99
    if getattr(config, "axial_pos_shape", None):
        seq = math.prod(config.axial_pos_shape)  # Reformer trains on exactly the axial length
    if getattr(config, "attention_type", None) == "block_sparse":
        # BigBird falls back to full attention unless the sequence is longer than its global, sliding and random blocks
        seq = config.block_size * (6 + 2 * config.num_random_blocks)
    if "past_values" in params:
        return _time_series(config, batch)
    if "input_nodes" in params:
        return _graph(config, batch)
    if "input_ids" in params:
        inputs["input_ids"] = torch.randint(1, min(vocab, 99), (batch, seq))
    if "bbox" in params:
        xy = torch.randint(0, 1000, (batch, seq, 2, 2)).sort(dim=2).values  # x0 <= x1, y0 <= y1
        inputs["bbox"] = torch.stack([xy[..., 0, 0], xy[..., 0, 1], xy[..., 1, 0], xy[..., 1, 1]], dim=-1)
    if "visual_feats" in params:
        inputs["visual_feats"] = torch.randn(batch, 5, config.visual_feat_dim)
        inputs["visual_pos"] = torch.rand(batch, 5, config.visual_pos_dim)
    if "pixel_values" in params and (not inputs or params["pixel_values"].default is inspect.Parameter.empty
                                     or getattr(config, "vision_config", None) is not None
                                     or getattr(config, "modality_type_vocab_size", None) is not None):
        h, w = _size2(getattr(vision, "image_size", None))
        channels = getattr(vision, "num_channels", None) or getattr(vision, "num_image_channels", None) or 3
        frames = getattr(vision, "num_frames", None)
        if frames:
            inputs["pixel_values"] = torch.randn(batch, frames, channels, h, w)
        else:
            inputs["pixel_values"] = torch.randn(batch, channels, h, w)
    if "audio_values" in params:
        inputs["audio_values"] = torch.randn(batch, config.num_audio_channels, config.spectrogram_length, config.frequency_length)
    if "inputs" in params and not inputs and getattr(config, "d_model", None):
        inputs["inputs"] = torch.randn(batch, seq, config.d_model)  # Perceiver without a preprocessor
    if "task_inputs" in params:  # OneFormer: the task prompt's tokens
        inputs["task_inputs"] = torch.randint(1, min(config.text_encoder_vocab_size, 99), (batch, config.task_seq_len))
    if "flattened_patches" in params:  # Pix2Struct: (row, column, patch pixels) per patch
        v = _sub(config, "vision_config")
        rows = torch.arange(4).repeat_interleave(4) + 1
        cols = torch.arange(4).repeat(4) + 1
        pos = torch.stack([rows, cols], -1).float().expand(batch, 16, 2)
        inputs["flattened_patches"] = torch.cat([pos, torch.randn(batch, 16, v.patch_embed_hidden_size)], -1)
    if cls.__name__ in HIDDEN_STATE_INPUTS:
        inputs = {HIDDEN_STATE_INPUTS[cls.__name__]: torch.randn(batch, seq, config.hidden_size)}
    if not inputs or "input_features" in params and "input_ids" in params and getattr(config, "audio_config", None):
        audio = _sub(config, "audio_config")
        if "input_values" in params:
            if getattr(config, "max_length", None) and getattr(config, "num_mel_bins", None) and getattr(config, "frequency_stride", None):
                inputs["input_values"] = torch.randn(batch, config.max_length, config.num_mel_bins)  # a spectrogram
            else:
                inputs["input_values"] = torch.randn(batch, 4000)
        elif "input_features" in params:
            if getattr(audio, "spec_size", None):  # CLAP: (batch, 1, time, mel bins)
                inputs["input_features"] = torch.randn(batch, 1, audio.spec_size * (audio.spec_size // audio.num_mel_bins), audio.num_mel_bins)
            elif getattr(config, "input_feat_per_channel", None):  # Speech2Text: (batch, frames, features)
                inputs["input_features"] = torch.randn(batch, 64, config.input_feat_per_channel * config.input_channels)
            elif getattr(config, "max_source_positions", None) and "whisper" in cls.__module__:
                inputs["input_features"] = torch.randn(batch, config.num_mel_bins, 2 * config.max_source_positions)
            else:
                inputs["input_features"] = torch.randn(batch, getattr(config, "num_mel_bins", 80), 64)
    if not inputs:
        raise NoInputs(f"unknown input kind for {cls.__name__}.forward({', '.join(list(params)[1:4])}, ...)")
    missing = [n for n, p in list(params.items())[1:] if p.default is inspect.Parameter.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in inputs]
    if missing:
        raise NoInputs(f"no inputs for {cls.__name__}.forward's {', '.join(missing)}")
    if "attention_mask" in params and "input_ids" in inputs and inputs["input_ids"].dim() == 2:
        # a padded batch, so the rewritten code's mask path runs: the last token of the last
        # sequence is padding (no row is fully masked)
        mask = torch.ones_like(inputs["input_ids"])
        mask[-1, -1] = 0
        inputs["attention_mask"] = mask
    if "decoder_input_ids" in params and ("input_ids" in inputs or getattr(config, "is_encoder_decoder", False)):
        dec_vocab = getattr(config, "decoder_vocab_size", None) or getattr(text, "vocab_size", None) or 99
        inputs["decoder_input_ids"] = torch.randint(0, min(dec_vocab, 99), (batch, 5))
    if "decoder_input_values" in params:
        width = config.hidden_size if cls.__name__ in HIDDEN_STATE_INPUTS else config.num_mel_bins
        inputs["decoder_input_values"] = torch.randn(batch, 5, width)
    return add_lm_labels(cls, params, inputs)


def _time_series(config, batch):
    past = config.context_length + max(config.lags_sequence)
    inputs = {
        "past_values": torch.randn(batch, past),
        "past_time_features": torch.randn(batch, past, config.num_time_features),
        "past_observed_mask": torch.ones(batch, past),
        "future_values": torch.randn(batch, config.prediction_length),
        "future_time_features": torch.randn(batch, config.prediction_length, config.num_time_features),
    }
    if config.num_static_categorical_features:
        inputs["static_categorical_features"] = torch.zeros(batch, config.num_static_categorical_features, dtype=torch.long)
    if config.num_static_real_features:
        inputs["static_real_features"] = torch.randn(batch, config.num_static_real_features)
    return inputs


def _graph(config, batch, nodes=5):
    hops = config.multi_hop_max_dist
    return {
        "input_nodes": torch.randint(1, config.num_atoms, (batch, nodes, 1)),
        "input_edges": torch.randint(1, config.num_edges, (batch, nodes, nodes, hops, 1)),
        "attn_bias": torch.zeros(batch, nodes + 1, nodes + 1),
        "in_degree": torch.randint(1, config.num_in_degree, (batch, nodes)),
        "out_degree": torch.randint(1, config.num_out_degree, (batch, nodes)),
        "spatial_pos": torch.randint(1, config.num_spatial, (batch, nodes, nodes)),
        "attn_edge_type": torch.randint(1, config.num_edges, (batch, nodes, nodes, 1)),
    }
