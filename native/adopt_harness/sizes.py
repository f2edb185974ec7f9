"""The one size table for tiny models the harness builds.

A tiny but consistent model: widths of 32, 4 heads, 2 layers, an odd feed-forward width (37, so a
kernel that assumes a power of two is caught). Keys are both config attributes (a transformers
config, a dataclass) and constructor parameters of plain ``nn.Module`` classes.
`CONFIG_SIZES` is what a config is shrunk with; `CONSTRUCTOR_SIZES` adds the names only plain
constructors use (channels, kernel sizes), which a transformers config must keep as it has them.
"""

CONFIG_SIZES = {
    "hidden_size": 32, "d_model": 32, "n_embd": 32, "embed_dim": 32, "dim": 32, "emb_dim": 32, "n_embed": 32, "d_embed": 32,
    "num_hidden_layers": 2, "num_layers": 2, "n_layer": 2, "n_layers": 2, "encoder_layers": 2, "decoder_layers": 2,
    "num_decoder_layers": 2, "num_encoder_layers": 2,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
    "num_heads": 4, "num_key_value_heads": 4,
    "intermediate_size": 37, "encoder_ffn_dim": 37, "decoder_ffn_dim": 37, "d_ff": 37, "n_inner": 37, "ffn_dim": 37,
    "vocab_size": 99, "d_kv": 8, "embedding_size": 32,
}

# Constructor parameters of plain modules that no transformers config is shrunk by.
_CONSTRUCTOR_ONLY = {
    "hidden_dim": 32, "in_features": 32, "out_features": 32, "in_dim": 32, "out_dim": 32, "features": 32, "width": 32,
    "heads": 4, "nhead": 4, "depth": 2, "layers": 2,
    "mlp_dim": 64, "hidden_features": 64, "dim_feedforward": 64,
    "in_channels": 8, "out_channels": 8, "inplanes": 8, "planes": 8, "channels": 8, "in_chans": 3, "inp": 8, "oup": 8,
    "expand_ratio": 2, "ndim": 32, "normalized_shape": 32,
    "num_channels": 3, "num_embeddings": 99, "max_position_embeddings": 64,
    "block_size": 64, "seq_len": 64, "max_seq_len": 64, "kernel_size": 3, "stride": 1, "eps": 1e-5,
    "num_classes": 10, "num_labels": 3, "head_dim": 8, "n_kv_heads": 2,
    "num_groups": 4, "temb_channels": 8,
    # the index of a layer in its stack (transformers' attention and decoder layers take one)
    "layer_idx": 0, "layer_id": 0,
    "embedding_dim": 32, "padding_idx": 0,
    # spellings of current vision and diffusion code (timm's in_chs, vit-pytorch's dim_in and mult)
    "in_chs": 8, "out_chs": 8, "dim_in": 32, "dim_out": 32, "mult": 2, "cross_attention_dim": 32,
}
CONSTRUCTOR_SIZES = {**_CONSTRUCTOR_ONLY, **CONFIG_SIZES}

# Head width of a shrunk config that states one.
HEAD_DIM = 8
