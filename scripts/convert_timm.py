"""`hubformers convert timm NAME_OR_FOLDER --output-dir DIR`: a timm model as a hubformers folder.

The model is built from its timm name (random weights unless `--checkpoint` gives a local file) or from a
folder written by timm's `save_for_hf` (which brings its own weights): nothing comes from the network. Its
class picks the converter (`TIMM_ARCHITECTURES`). The folder holds our model's `save_pretrained` output and
an image processor configured like timm's evaluation preprocessing, and the conversion checks that our
logits equal timm's.

ViT: the plain VisionTransformer (`vit_*_patch*`: class token, pre-norm blocks, fused qkv, token pooling)
converts exactly; any variant our ViT cannot express (register tokens, layer scale, qk-norm, ...) is refused
with a `ValueError` that names what it found, rather than converted into a model that gives other logits.

Swin: timm's SwinTransformer (`swin_*_patch4_window*`) converts exactly at its input size; timm merges
patches at the start of a stage where ours (and transformers') merge at the end of the previous one, and its
fused qkv is split. Models whose blocks use other window sizes (made for inputs smaller than a window) are
refused.
"""

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.image_utils import PILImageResampling

from hubformers import SwinConfig, SwinForImageClassification, ViTConfig, ViTForImageClassification, ViTImageProcessor
from hubformers.configuration_vit import to_pair
from hubformers.scripts.checkpoints import add_checkpoint_arguments, folder_weights, json_object, read_checkpoint

# --- the command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="a timm model name (e.g. vit_base_patch16_224, built with random weights unless --checkpoint "
        "is given) or a folder written by timm's save_for_hf (config.json + weights)",
    )
    parser.add_argument("--output-dir", required=True, type=Path, help="where the hubformers folder goes")
    add_checkpoint_arguments(parser)
    parser.add_argument(
        "--model-args",
        type=json_object,
        default={},
        help="extra timm.create_model arguments as a JSON object, e.g. '{\"num_classes\": 10}'",
    )


def main(args: argparse.Namespace) -> None:
    model = load_timm_model(args.model, args.checkpoint, args.allow_pickle, args.model_args)
    ours = converter_for(model)(model, args.output_dir)
    config = ours.config
    print(
        f"Converted timm {model.pretrained_cfg.get('architecture', args.model)} "
        f"({type(ours).__name__}, {config.num_labels} labels) to {args.output_dir}; the logits match timm's."
    )


def converter_for(model: nn.Module) -> Callable[[nn.Module, Path], nn.Module]:
    """The converter of a timm model's class: (model, output_dir) -> our model, saved in output_dir."""
    name = type(model).__name__
    if name not in TIMM_ARCHITECTURES:
        raise ValueError(
            f"timm {name} models cannot be converted; hubformers converts {', '.join(TIMM_ARCHITECTURES)}."
        )
    return TIMM_ARCHITECTURES[name]


# --- timm: loading a model without the network --------------------------------------------------------


def import_timm():
    try:
        import timm
    except ImportError as error:
        raise ImportError("Converting timm models needs timm: `pip install timm`.") from error
    return timm


def load_timm_model(
    name_or_folder: str,
    checkpoint: str | Path | None = None,
    allow_pickle: bool = False,
    model_args: dict | None = None,
) -> nn.Module:
    """Build a timm model from its registry name or a `save_for_hf` folder (with `pretrained=False`: nothing
    is downloaded) and load local weights into it: `checkpoint` if given, else the folder's own."""
    timm = import_timm()
    folder = Path(name_or_folder)
    source = f"local-dir:{folder}" if folder.is_dir() else name_or_folder
    model = timm.create_model(source, pretrained=False, **(model_args or {}))
    if checkpoint is None and folder.is_dir():
        checkpoint = folder_weights(folder)
    if checkpoint is not None:
        model.load_state_dict(read_checkpoint(checkpoint, allow_pickle))
    return model


# --- timm: what our ViT can express -------------------------------------------------------------------

# Activations our config can name, most common first; see `activation_name`.
ACTIVATION_CANDIDATES = ("gelu", "gelu_pytorch_tanh", "quick_gelu", "relu", "silu")


def activation_name(activation: nn.Module) -> str | None:
    """The transformers name of a timm activation, found by evaluating it: timm has several classes per
    function (nn.GELU, timm's GELU, get_act_layer strings), and what must match is the function."""
    probe = torch.linspace(-8, 8, 1001)
    with torch.no_grad():
        output = activation(probe)
        for name in ACTIVATION_CANDIDATES:
            if (ACT2FN[name](probe) - output).abs().max() <= 1e-6:
                return name
    return None


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


# --- timm: config, weights and preprocessing ----------------------------------------------------------


def int_or_pair(pair: tuple[int, int]) -> int | list[int]:
    return pair[0] if pair[0] == pair[1] else list(pair)


def imagenet_labels(model: nn.Module) -> dict[int, str] | None:
    """ImageNet class names when timm says the head is an ImageNet head; None leaves LABEL_i."""
    timm = import_timm()
    subset = timm.data.infer_imagenet_subset(model)
    if subset is None:
        return None
    info = timm.data.ImageNetInfo(subset)
    return {index: info.index_to_description(index) for index in range(model.num_classes)}


def vit_config_from_timm(model: nn.Module) -> ViTConfig:
    """Our config for a (checked) timm ViT. timm's LayerNorm eps is 1e-6, not google's 1e-12."""
    num_heads, intermediate_size, qkv_bias, activation = block_shape(model.blocks[0])
    patch_size = tuple(model.patch_embed.patch_size)
    label_names = imagenet_labels(model)
    labels = {"id2label": label_names} if label_names else {"num_labels": model.num_classes}
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
        **labels,
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


def convert_state_dict(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = {}
    for timm_key, tensor in timm_state.items():
        names = our_keys(timm_key)
        # copies: the model must own its weights, not views sharing timm's (or each other's) storage
        ours.update(zip(names, (part.clone() for part in tensor.chunk(len(names), dim=0))))
    return ours


def image_processor_from_timm(model: nn.Module) -> ViTImageProcessor:
    """timm's evaluation preprocessing for this model: resize to size / crop_pct, center-crop to the
    model's input size, normalise with its mean/std (timm.data.transforms_imagenet_eval)."""
    timm = import_timm()
    data = timm.data.resolve_input_data_config(model)  # the model's own input size, not the cfg's default
    _, height, width = data["input_size"]
    crop_pct = data.get("crop_pct") or timm.data.DEFAULT_CROP_PCT
    crop_mode = data.get("crop_mode") or "center"
    scale_h, scale_w = math.floor(height / crop_pct), math.floor(width / crop_pct)
    if crop_mode == "squash":
        size = {"height": scale_h, "width": scale_w}
    elif crop_mode == "center" and scale_h == scale_w:
        size = {"shortest_edge": scale_h}
    else:
        raise ValueError(
            f"timm preprocessing crop_mode={crop_mode!r} at input size {(height, width)} has no equivalent in "
            "our image processor (it supports 'squash', and 'center' for square inputs)."
        )
    try:
        resample = PILImageResampling[data["interpolation"].upper()]
    except KeyError:
        raise ValueError(f"timm interpolation {data['interpolation']!r} has no PIL equivalent.") from None
    return ViTImageProcessor(
        size=size,
        crop_size={"height": height, "width": width},
        do_center_crop=True,
        resample=resample,
        image_mean=list(data["mean"]),
        image_std=list(data["std"]),
    )


# --- timm: the conversion -----------------------------------------------------------------------------


def check_same_logits(timm_model: nn.Module, ours: ViTForImageClassification) -> None:
    """One forward of both on the same random images: catches any difference the structural checks miss."""
    height, width = to_pair(ours.config.image_size)
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(1, ours.config.num_channels, height, width, generator=generator)
    was_training = timm_model.training
    timm_model.eval()
    with torch.no_grad():
        expected, got = timm_model(pixel_values), ours(pixel_values).logits
    timm_model.train(was_training)
    difference = (expected - got).abs().max().item()
    if difference > 1e-4 * max(1.0, expected.abs().max().item()):
        raise RuntimeError(f"The converted model's logits differ from timm's by {difference:.3g}.")


def check_float32_on_cpu(model: nn.Module) -> None:
    parameter = next(model.parameters())
    if parameter.dtype != torch.float32 or parameter.device.type != "cpu":
        raise ValueError(
            f"Convert a float32 model on the CPU (call .float().cpu() first), got {parameter.dtype} on "
            f"{parameter.device}."
        )


def convert_timm_vit(
    model_or_name_or_folder: nn.Module | str | Path,
    output_dir: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    allow_pickle: bool = False,
    model_args: dict | None = None,
) -> ViTForImageClassification:
    """A timm ViT as our `ViTForImageClassification` (fp32, eval mode) with the same logits.

    `model_or_name_or_folder` is a timm model, a timm model name or a `save_for_hf` folder; the other
    keyword arguments are `load_timm_model`'s. With `output_dir`, the model and an image processor
    configured like timm's evaluation preprocessing are saved there.
    """
    if isinstance(model_or_name_or_folder, nn.Module):
        timm_model = model_or_name_or_folder
    else:
        timm_model = load_timm_model(model_or_name_or_folder, checkpoint, allow_pickle, model_args)
    check_convertible(timm_model)
    check_float32_on_cpu(timm_model)
    config = vit_config_from_timm(timm_model)
    # Built without memory or random init (seconds for ViT-B here): every parameter comes from timm.
    with torch.device("meta"):
        ours = ViTForImageClassification(config)
    ours.load_state_dict(convert_state_dict(timm_model.state_dict()), strict=True, assign=True)
    ours.eval()
    check_same_logits(timm_model, ours)
    if output_dir is not None:
        ours.save_pretrained(output_dir)
        image_processor_from_timm(timm_model).save_pretrained(output_dir)
    return ours


# --- timm: Swin Transformer ---------------------------------------------------------------------------


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


def swin_config_from_timm(model: nn.Module) -> SwinConfig:
    block = model.layers[0].blocks[0]
    label_names = imagenet_labels(model)
    labels = {"id2label": label_names} if label_names else {"num_labels": model.num_classes}
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
        **labels,
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


def convert_timm_swin(
    model_or_name_or_folder: nn.Module | str | Path,
    output_dir: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    allow_pickle: bool = False,
    model_args: dict | None = None,
) -> SwinForImageClassification:
    """A timm Swin (swin_*) as our `SwinForImageClassification` (fp32, eval mode) with the same logits; the
    arguments are `convert_timm_vit`'s."""
    if isinstance(model_or_name_or_folder, nn.Module):
        timm_model = model_or_name_or_folder
    else:
        timm_model = load_timm_model(model_or_name_or_folder, checkpoint, allow_pickle, model_args)
    problems = swin_problems(timm_model)
    if problems:
        raise ValueError(f"This timm Swin has {'; '.join(problems)}, which hubformers' Swin cannot express.")
    check_float32_on_cpu(timm_model)
    with torch.device("meta"):
        ours = SwinForImageClassification(swin_config_from_timm(timm_model))
    state = {}
    for timm_key, tensor in timm_model.state_dict().items():
        names = our_swin_keys(timm_key)
        state.update(zip(names, (part.clone() for part in tensor.chunk(len(names), dim=0))))
    ours.load_state_dict(state, strict=True, assign=True)
    ours.eval()
    check_same_logits(timm_model, ours)
    if output_dir is not None:
        ours.save_pretrained(output_dir)
        image_processor_from_timm(timm_model).save_pretrained(output_dir)
    return ours


# timm model class -> its converter.
TIMM_ARCHITECTURES = {"VisionTransformer": convert_timm_vit, "SwinTransformer": convert_timm_swin}
