"""timm's ViT (`vit_*_patch*`) as our `ViTForImageClassification`, with the same logits.

The plain VisionTransformer (class token, pre-norm blocks, fused qkv, token pooling) converts exactly; any
variant our ViT cannot express (register tokens, layer scale, qk-norm, ...) is refused with a `ValueError`
that names what it found, rather than converted into a model that gives other logits.
"""

import re

from torch import nn

from hubformers import ViTConfig, ViTForImageClassification
from hubformers.scripts.timm_models import (
    ACTIVATION_CANDIDATES,
    activation_name,
    import_timm,
    int_or_pair,
    label_fields,
    timm_converter,
)


def model_problems(model: nn.Module) -> list[str]:
    """What a timm VisionTransformer has outside the blocks that our ViT cannot express."""
    timm = import_timm()
    problems = []
    if type(model) is not timm.models.vision_transformer.VisionTransformer:
        problems.append(f"a VisionTransformer subclass ({type(model).__name__})")
    if getattr(model, "dist_token", None) is not None:
        problems.append("a distillation token")
    if model.cls_token is None:
        problems.append("no class token (class_token=False)")
    if model.global_pool != "token":
        problems.append(f"global_pool={model.global_pool!r} (ours classifies the class token: 'token')")
    if not isinstance(model.fc_norm, nn.Identity):
        problems.append("a norm after pooling (fc_norm)")
    if not isinstance(model.norm_pre, nn.Identity):
        problems.append("a norm before the blocks (pre_norm, norm_pre)")
    if not isinstance(model.norm, nn.LayerNorm) and isinstance(model.fc_norm, nn.Identity):
        problems.append(f"final norm {type(model.norm).__name__} (final_norm=False or not a LayerNorm)")
    if model.reg_token is not None:
        problems.append(f"register tokens (reg_tokens={model.num_reg_tokens})")
    if model.pos_embed is None:
        problems.append("no position embedding")
    if model.no_embed_class:
        problems.append("no_embed_class (no position embedding on the class token)")
    if model.dynamic_img_size:
        problems.append("dynamic_img_size")
    if not isinstance(model.patch_drop, nn.Identity):
        problems.append("patch dropout (patch_drop_rate)")
    if not isinstance(model.head, (nn.Linear, nn.Identity)):
        problems.append(f"head {type(model.head).__name__}")
    return problems + patch_embed_problems(model.patch_embed)


def patch_embed_problems(patch_embed: nn.Module) -> list[str]:
    timm = import_timm()
    if type(patch_embed) is not timm.layers.PatchEmbed:
        return [f"patch embedding {type(patch_embed).__name__} (e.g. a hybrid CNN stem)"]
    problems = []
    if not isinstance(patch_embed.norm, nn.Identity):
        problems.append("a norm in the patch embedding (embed_norm_layer)")
    if patch_embed.proj.bias is None:
        problems.append("a patch embedding without bias")
    if patch_embed.dynamic_img_pad:
        problems.append("dynamic_img_pad")
    return problems


def block_problems(block: nn.Module) -> list[str]:
    """What one timm block has that our pre-norm `ViTLayer` cannot express."""
    timm = import_timm()
    if type(block) is not timm.models.vision_transformer.Block:
        return [f"block {type(block).__name__} (ours is the pre-norm Block)"]
    attention, mlp = block.attn, block.mlp
    problems = []
    if not (isinstance(block.ls1, nn.Identity) and isinstance(block.ls2, nn.Identity)):
        problems.append("layer scale (init_values, ls1/ls2)")
    if not all(isinstance(norm, nn.LayerNorm) for norm in (block.norm1, block.norm2)):
        problems.append(f"block norm {type(block.norm1).__name__} (ours is LayerNorm)")
    if type(attention) is not timm.layers.Attention:
        problems.append(f"attention {type(attention).__name__}")
        return problems
    if not (isinstance(attention.q_norm, nn.Identity) and isinstance(attention.k_norm, nn.Identity)):
        problems.append("qk_norm")
    if not isinstance(attention.norm, nn.Identity):
        problems.append("a norm in the attention (scale_attn_norm)")
    if attention.gate is not None:
        problems.append("gated attention")
    if attention.attn_dim != attention.qkv.in_features:
        problems.append(f"attention width {attention.attn_dim} != embed_dim {attention.qkv.in_features}")
    if type(mlp) is not timm.layers.Mlp:
        problems.append(f"MLP {type(mlp).__name__} (ours is fc1 -> activation -> fc2)")
        return problems
    if not isinstance(mlp.norm, nn.Identity):
        problems.append("a norm in the MLP (scale_mlp_norm)")
    if attention.proj.bias is None or mlp.fc1.bias is None or mlp.fc2.bias is None:
        problems.append("projections without bias (proj_bias=False)")
    if activation_name(mlp.act) is None:
        problems.append(f"activation {mlp.act} (ours: one of {', '.join(ACTIVATION_CANDIDATES)})")
    return problems


def block_shape(block: nn.Module) -> tuple:
    """What our config holds once for all blocks, so every block must agree on it."""
    attention = block.attn
    return (
        attention.num_heads,
        block.mlp.fc1.out_features,
        attention.qkv.bias is not None,
        activation_name(block.mlp.act),
    )


def unsupported_features(model: nn.Module) -> list[str]:
    """Every feature of a timm model that our ViT cannot express, each named once; empty if it converts."""
    timm = import_timm()
    if not isinstance(model, timm.models.vision_transformer.VisionTransformer):
        return [f"not a timm VisionTransformer ({type(model).__name__})"]
    problems = model_problems(model)
    for block in model.blocks:
        problems += [problem for problem in block_problems(block) if problem not in problems]
    if problems:
        return problems
    if len({block_shape(block) for block in model.blocks}) > 1:
        problems.append("blocks that differ in heads, MLP width, qkv bias or activation")
    if len({norm.eps for norm in all_layer_norms(model)}) > 1:
        problems.append("LayerNorms with different eps")
    if any(norm.weight is None or norm.bias is None for norm in all_layer_norms(model)):
        problems.append("LayerNorms without a learned weight or bias")
    return problems


def all_layer_norms(model: nn.Module) -> list[nn.LayerNorm]:
    return [model.norm] + [norm for block in model.blocks for norm in (block.norm1, block.norm2)]


def check_convertible(model: nn.Module) -> None:
    problems = unsupported_features(model)
    if problems:
        name = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise ValueError(
            f"timm model {name!r} cannot be converted to a hubformers ViT (class token, learned positions, "
            f"pre-norm LayerNorm blocks, linear head on the class token); it has: {'; '.join(problems)}."
        )


def vit_config_from_timm(model: nn.Module) -> ViTConfig:
    """Our config for a (checked) timm ViT. timm's LayerNorm eps is 1e-6, not google's 1e-12."""
    num_heads, intermediate_size, qkv_bias, activation = block_shape(model.blocks[0])
    patch_size = tuple(model.patch_embed.patch_size)
    return ViTConfig(
        hidden_size=model.embed_dim,
        num_hidden_layers=len(model.blocks),
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        hidden_act=activation,
        layer_norm_eps=model.norm.eps,
        image_size=int_or_pair(tuple(model.patch_embed.img_size)),
        patch_size=int_or_pair(patch_size),
        num_channels=model.patch_embed.proj.in_channels,
        qkv_bias=qkv_bias,
        # the masked-image-modeling decoder must up-sample by the patch size
        encoder_stride=patch_size[0],
        **label_fields(model),
    )


# timm parameter name -> ours; `blocks.N.attn.qkv` is split by `our_keys`.
TIMM_TO_OURS = [
    (r"cls_token", "vit.embeddings.cls_token"),
    (r"pos_embed", "vit.embeddings.position_embeddings"),
    (r"patch_embed\.proj\.", "vit.embeddings.patch_embeddings.projection."),
    (r"blocks\.(\d+)\.norm1\.", r"vit.layers.\1.layernorm_before."),
    (r"blocks\.(\d+)\.attn\.proj\.", r"vit.layers.\1.attention.o_proj."),
    (r"blocks\.(\d+)\.norm2\.", r"vit.layers.\1.layernorm_after."),
    (r"blocks\.(\d+)\.mlp\.", r"vit.layers.\1.mlp."),
    (r"norm\.", "vit.layernorm."),
    (r"head\.", "classifier."),
]
FUSED_QKV = re.compile(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)")


def our_keys(timm_key: str) -> list[str]:
    """Our names for one timm parameter: one name, or q/k/v for timm's fused qkv (stacked in that order
    along the output dimension)."""
    fused = FUSED_QKV.fullmatch(timm_key)
    if fused:
        layer, kind = fused.groups()
        return [f"vit.layers.{layer}.attention.{proj}.{kind}" for proj in ("q_proj", "k_proj", "v_proj")]
    for pattern, replacement in TIMM_TO_OURS:
        if re.match(pattern, timm_key):
            return [re.sub(f"^{pattern}", replacement, timm_key)]
    raise KeyError(f"No hubformers name for timm parameter {timm_key!r}.")


convert_timm_vit = timm_converter(ViTForImageClassification, check_convertible, vit_config_from_timm, our_keys)
