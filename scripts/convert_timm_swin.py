"""timm's Swin Transformer (`swin_*_patch4_window*`) as our `SwinForImageClassification`, with the same logits.

It converts exactly at its input size: timm merges patches at the start of a stage where ours (and
transformers') merge at the end of the previous one, and its fused qkv is split. Models whose blocks use other
window sizes (made for inputs smaller than a window) are refused.
"""

import re

from torch import nn

from hubformers import SwinConfig, SwinForImageClassification
from hubformers.scripts.timm_models import activation_name, import_timm, int_or_pair, label_fields, timm_converter


def swin_problems(model: nn.Module) -> list[str]:
    """What a timm SwinTransformer has that our Swin cannot express."""
    timm = import_timm()
    problems = []
    if type(model) is not timm.models.swin_transformer.SwinTransformer:
        problems.append(f"a SwinTransformer subclass ({type(model).__name__})")
    if getattr(model, "absolute_pos_embed", None) is not None:
        problems.append("absolute position embeddings")
    if getattr(model.head, "global_pool", None) is None or model.head.global_pool.pool_type != "avg":
        problems.append("a head without average pooling")
    window = model.layers[0].blocks[0].attn.window_size
    blocks = [block for stage in model.layers for block in stage.blocks]
    if window[0] != window[1] or any(block.attn.window_size != window for block in blocks):
        problems.append(
            f"windows other than one square size {window} in every block (a model made for an input smaller "
            "than its windows)"
        )
    norms = [model.norm, model.patch_embed.norm] + [norm for block in blocks for norm in (block.norm1, block.norm2)]
    if any(type(norm) is not nn.LayerNorm for norm in norms):
        problems.append("norms other than LayerNorm")
    if any(activation_name(block.mlp.act) != "gelu" for block in blocks):
        problems.append("an MLP activation other than GELU")
    return problems


def refuse_swin(model: nn.Module) -> None:
    problems = swin_problems(model)
    if problems:
        raise ValueError(f"This timm Swin has {'; '.join(problems)}, which hubformers' Swin cannot express.")


def swin_config_from_timm(model: nn.Module) -> SwinConfig:
    block = model.layers[0].blocks[0]
    patch_size = tuple(model.patch_embed.patch_size)
    return SwinConfig(
        image_size=int_or_pair(tuple(model.patch_embed.img_size)),
        patch_size=int_or_pair(patch_size),
        num_channels=model.patch_embed.proj.in_channels,
        embed_dim=model.patch_embed.proj.out_channels,
        depths=[len(stage.blocks) for stage in model.layers],
        num_heads=[stage.blocks[0].attn.num_heads for stage in model.layers],
        window_size=block.attn.window_size[0],
        mlp_ratio=block.mlp.fc1.out_features / block.mlp.fc1.in_features,
        qkv_bias=block.attn.qkv.bias is not None,
        layer_norm_eps=model.norm.eps,
        encoder_stride=patch_size[0] * 2 ** (len(model.layers) - 1),
        drop_path_rate=0.0,
        **label_fields(model),
    )


def our_swin_keys(timm_key: str) -> list[str]:
    """Our names for one timm Swin parameter. timm merges patches at the start of stage i, we at the end of
    stage i - 1; timm's fused qkv is split into q, k, v."""
    names = [
        (r"patch_embed\.proj\.", "swin.embeddings.patch_embeddings.projection."),
        (r"patch_embed\.norm\.", "swin.embeddings.norm."),
        (r"layers\.(\d+)\.blocks\.(\d+)\.norm1\.", r"swin.encoder.layers.\1.blocks.\2.layernorm_before."),
        (r"layers\.(\d+)\.blocks\.(\d+)\.norm2\.", r"swin.encoder.layers.\1.blocks.\2.layernorm_after."),
        (r"layers\.(\d+)\.blocks\.(\d+)\.mlp\.", r"swin.encoder.layers.\1.blocks.\2.mlp."),
        (r"layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.", r"swin.encoder.layers.\1.blocks.\2.attention.o_proj."),
        (
            r"layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table",
            r"swin.encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table",
        ),
        (r"norm\.", "swin.layernorm."),
        (r"head\.fc\.", "classifier."),
    ]
    downsample = re.fullmatch(r"layers\.(\d+)\.downsample\.(.*)", timm_key)
    if downsample:
        return [f"swin.encoder.layers.{int(downsample[1]) - 1}.downsample.{downsample[2]}"]
    fused = re.fullmatch(r"layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", timm_key)
    if fused:
        stage, block, kind = fused.groups()
        prefix = f"swin.encoder.layers.{stage}.blocks.{block}.attention"
        return [f"{prefix}.{proj}.{kind}" for proj in ("q_proj", "k_proj", "v_proj")]
    for pattern, replacement in names:
        if re.match(pattern, timm_key):
            return [re.sub(f"^{pattern}", replacement, timm_key)]
    raise KeyError(f"No hubformers name for timm parameter {timm_key!r}.")


convert_timm_swin = timm_converter(SwinForImageClassification, refuse_swin, swin_config_from_timm, our_swin_keys)
