"""`hubformers convert open_clip MODEL_NAME --output-dir DIR`: an open_clip ViT CLIP as a hubformers folder.

The model is built from its open_clip name (ViT-B-32, ViT-B-32-quickgelu, ViT-L-14, ...) with random weights
unless `--checkpoint` gives a local file: nothing comes from the network. OpenAI's models use QuickGELU (the
`-quickgelu` names, or `--model-args '{"force_quick_gelu": true}'` for an OpenAI checkpoint under a plain name),
LAION's GELU; both convert. The folder holds our `CLIPModel` and a processor set up like open_clip's (image
size, mean and std; OpenAI's BPE truncated to the context length), and the conversion checks that our logits
equal open_clip's. Variants our CLIP cannot express (attentional pooling, SigLIP's logit bias, layer scale,
custom text towers, ...) are refused with a `ValueError` that names what was found.
"""

import argparse
from pathlib import Path

import torch
from torch import nn

from hubformers import CLIPConfig, CLIPImageTextProcessor, CLIPModel, clip_image_processor
from hubformers.scripts.build_clip_tokenizer import build_clip_tokenizer
from hubformers.scripts.checkpoints import add_checkpoint_arguments, json_object, read_checkpoint

TOLERANCE = 1e-4  # fp32, on logits of magnitude up to 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help="an open_clip model name, e.g. ViT-B-32 (LAION, GELU) or ViT-B-32-quickgelu (OpenAI)"
    )
    parser.add_argument("--output-dir", required=True, type=Path, help="where the hubformers folder goes")
    add_checkpoint_arguments(parser)
    parser.add_argument(
        "--model-args",
        type=json_object,
        default={},
        help="extra open_clip.create_model arguments as a JSON object, e.g. '{\"force_quick_gelu\": true}'",
    )


def main(args: argparse.Namespace) -> None:
    model = load_open_clip_model(args.model, args.checkpoint, args.allow_pickle, args.model_args)
    ours = convert(model, args.output_dir)
    print(
        f"Converted open_clip {args.model} ({ours.config.text_config.hidden_act}, "
        f"{ours.num_parameters():,} parameters) to {args.output_dir}; the logits match open_clip's."
    )


def load_open_clip_model(name: str, checkpoint=None, allow_pickle: bool = False, model_args: dict | None = None):
    try:
        import open_clip
    except ImportError as error:
        raise ImportError("Converting open_clip models needs open_clip: `pip install open_clip_torch`.") from error
    if name not in open_clip.list_models():
        raise ValueError(f"Unknown open_clip model {name!r}; `open_clip.list_models()` lists the names.")
    model = open_clip.create_model(name, pretrained=None, **(model_args or {})).eval()
    if checkpoint is not None:
        model.load_state_dict(read_checkpoint(checkpoint, allow_pickle))
    return model


def refuse(what: str) -> None:
    raise ValueError(f"This open_clip model has {what}, which hubformers' CLIP does not have; it cannot convert.")


def check_convertible(model: nn.Module) -> None:
    """Only the architecture our CLIPModel computes: OpenAI's ViT CLIP, with QuickGELU or GELU."""
    from open_clip.model import CLIP
    from open_clip.transformer import VisionTransformer

    if type(model) is not CLIP:
        refuse(f"a {type(model).__name__} (custom text tower or captioner)")
    visual = model.visual
    if not isinstance(visual, VisionTransformer):
        refuse(f"a {type(visual).__name__} image tower (not a ViT)")
    if getattr(model, "logit_bias", None) is not None:
        refuse("a logit bias (SigLIP's sigmoid loss)")
    if visual.attn_pool is not None or visual.pool_type != "tok" or visual.final_ln_after_pool:
        refuse(f"image pooling {visual.pool_type!r} / attentional pooling / LayerNorm after pooling")
    if isinstance(visual.ln_pre, nn.Identity) or visual.conv1.bias is not None or visual.proj is None:
        refuse("no LayerNorm before the image encoder, a patch-embedding bias or no image projection")
    if model.text_pool_type != "argmax" or isinstance(model.text_projection, nn.Linear) or model.attn_mask is None:
        refuse(f"text pooling {model.text_pool_type!r}, a biased text projection or a non-causal text tower")
    for block in [*visual.transformer.resblocks, *model.transformer.resblocks]:
        extras = [
            name
            for name in ("ls_1", "ls_2", "ln_attn")
            if not isinstance(getattr(block, name, nn.Identity()), nn.Identity)
        ]
        extras += ["ln"] if not isinstance(getattr(block.mlp, "ln", nn.Identity()), nn.Identity) else []
        if extras or not isinstance(block.attn, nn.MultiheadAttention):
            refuse(f"transformer blocks with {extras or type(block.attn).__name__}")


def activation_name(model: nn.Module) -> str:
    from open_clip.transformer import QuickGELU

    activation = model.transformer.resblocks[0].mlp.gelu
    if isinstance(activation, QuickGELU):
        return "quick_gelu"
    if isinstance(activation, nn.GELU) and activation.approximate == "none":
        return "gelu"
    refuse(f"the MLP activation {activation}")


def tower_config(transformer: nn.Module, hidden_act: str) -> dict:
    block = transformer.resblocks[0]
    return dict(
        hidden_size=transformer.width,
        num_hidden_layers=len(transformer.resblocks),
        num_attention_heads=block.attn.num_heads,
        intermediate_size=block.mlp.c_fc.out_features,
        hidden_act=hidden_act,
        layer_norm_eps=block.ln_1.eps,
    )


def side_or_pair(size: tuple[int, int]) -> int | list[int]:
    """An int for square sizes, as transformers' CLIP configs need to load the folder."""
    return size[0] if size[0] == size[1] else list(size)


def config_of(model: nn.Module) -> CLIPConfig:
    hidden_act = activation_name(model)
    visual = model.visual
    return CLIPConfig(
        text_config=dict(
            **tower_config(model.transformer, hidden_act),
            vocab_size=model.vocab_size,
            max_position_embeddings=model.context_length,
            eos_token_id=model.vocab_size - 1,  # <|endoftext|>, the highest id, where open_clip pools (argmax)
            bos_token_id=model.vocab_size - 2,
        ),
        vision_config=dict(
            **tower_config(visual.transformer, hidden_act),
            image_size=side_or_pair(visual.image_size),
            patch_size=side_or_pair(visual.patch_size),
        ),
        projection_dim=model.text_projection.shape[1],
        logit_scale_init_value=model.logit_scale.item(),
    )


def block_weights(prefix: str, block: nn.Module) -> dict[str, torch.Tensor]:
    """One open_clip residual block -> our encoder layer's weights (the fused q/k/v projection split in three)."""
    attn = block.attn
    query, key, value = attn.in_proj_weight.chunk(3)
    query_bias, key_bias, value_bias = attn.in_proj_bias.chunk(3)
    return {
        f"{prefix}.layer_norm1.weight": block.ln_1.weight,
        f"{prefix}.layer_norm1.bias": block.ln_1.bias,
        f"{prefix}.self_attn.q_proj.weight": query,
        f"{prefix}.self_attn.q_proj.bias": query_bias,
        f"{prefix}.self_attn.k_proj.weight": key,
        f"{prefix}.self_attn.k_proj.bias": key_bias,
        f"{prefix}.self_attn.v_proj.weight": value,
        f"{prefix}.self_attn.v_proj.bias": value_bias,
        f"{prefix}.self_attn.out_proj.weight": attn.out_proj.weight,
        f"{prefix}.self_attn.out_proj.bias": attn.out_proj.bias,
        f"{prefix}.layer_norm2.weight": block.ln_2.weight,
        f"{prefix}.layer_norm2.bias": block.ln_2.bias,
        f"{prefix}.mlp.fc1.weight": block.mlp.c_fc.weight,
        f"{prefix}.mlp.fc1.bias": block.mlp.c_fc.bias,
        f"{prefix}.mlp.fc2.weight": block.mlp.c_proj.weight,
        f"{prefix}.mlp.fc2.bias": block.mlp.c_proj.bias,
    }


def state_dict_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """open_clip's weights under our (transformers') names."""
    visual = model.visual
    state = {
        "vision_model.embeddings.class_embedding": visual.class_embedding,
        "vision_model.embeddings.patch_embedding.weight": visual.conv1.weight,
        "vision_model.embeddings.position_embedding.weight": visual.positional_embedding,
        "vision_model.pre_layrnorm.weight": visual.ln_pre.weight,
        "vision_model.pre_layrnorm.bias": visual.ln_pre.bias,
        "vision_model.post_layernorm.weight": visual.ln_post.weight,
        "vision_model.post_layernorm.bias": visual.ln_post.bias,
        "visual_projection.weight": visual.proj.t(),  # open_clip computes x @ proj, a Linear x @ W^T
        "text_model.embeddings.token_embedding.weight": model.token_embedding.weight,
        "text_model.embeddings.position_embedding.weight": model.positional_embedding,
        "text_model.final_layer_norm.weight": model.ln_final.weight,
        "text_model.final_layer_norm.bias": model.ln_final.bias,
        "text_projection.weight": model.text_projection.t(),
        "logit_scale": model.logit_scale,
    }
    for i, block in enumerate(visual.transformer.resblocks):
        state.update(block_weights(f"vision_model.encoder.layers.{i}", block))
    for i, block in enumerate(model.transformer.resblocks):
        state.update(block_weights(f"text_model.encoder.layers.{i}", block))
    return {name: tensor.detach().clone().contiguous() for name, tensor in state.items()}


def new_processor(model: nn.Module) -> CLIPImageTextProcessor:
    """open_clip's evaluation preprocessing (resize the shorter side, centre crop, its mean and std) and tokenizer."""
    config = model.visual.preprocess_cfg
    image_processor = clip_image_processor(
        model.visual.image_size[0], image_mean=list(config["mean"]), image_std=list(config["std"])
    )
    return CLIPImageTextProcessor(image_processor, build_clip_tokenizer(model_max_length=model.context_length))


@torch.no_grad()
def check_same_logits(model: nn.Module, ours: CLIPModel) -> float:
    """Both models on random images and on token ids shaped like open_clip's tokenizer output (start, text,
    end-of-text, zero padding); the largest difference of their logits, which must be within TOLERANCE."""
    batch_size, vocab_size = 3, model.vocab_size
    pixel_values = torch.randn(batch_size, 3, *model.visual.image_size)
    input_ids = torch.zeros(batch_size, model.context_length, dtype=torch.long)
    for row, length in enumerate([3, model.context_length - 2, 9][:batch_size]):
        input_ids[row, 0], input_ids[row, length + 1] = vocab_size - 2, vocab_size - 1
        input_ids[row, 1 : length + 1] = torch.randint(0, vocab_size - 2, (length,))
    image_features = model.encode_image(pixel_values, normalize=True)
    text_features = model.encode_text(input_ids, normalize=True)
    expected = model.logit_scale.exp() * image_features @ text_features.t()
    got = ours(input_ids=input_ids, pixel_values=pixel_values).logits_per_image
    difference = (expected - got).abs().max().item()
    if difference > TOLERANCE:
        raise ValueError(f"The converted model's logits differ from open_clip's by {difference:.2e} (> {TOLERANCE}).")
    return difference


def convert_weights(model: nn.Module) -> CLIPModel:
    """Our CLIPModel with the open_clip model's weights, checked to give its logits."""
    check_convertible(model)
    ours = CLIPModel(config_of(model)).eval()
    ours.load_state_dict(state_dict_of(model))
    check_same_logits(model, ours)
    return ours


def convert(model: nn.Module, output_dir: Path) -> CLIPModel:
    """`convert_weights`, saved with a processor set up like open_clip's."""
    ours = convert_weights(model)
    ours.save_pretrained(output_dir)
    new_processor(model).save_pretrained(output_dir)
    return ours
