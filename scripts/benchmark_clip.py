"""CLIP: ours vs transformers' CLIPModel vs open_clip's CLIP, on the same weights.

An open_clip CLIP (ViT-B-32 by default) is built with random weights and converted to ours; ours is saved and
loaded by transformers' CLIPModel (the checkpoint layout is shared). The workload: a batch of
images (8 of 224x224 by default) and as many texts of the full context (77 tokens), the image-text logits
compared. The loss of the forward+backward mode is CLIP's symmetric contrastive loss. By default all run sdpa
attention (open_clip through torch's MultiheadAttention).
"""

import argparse
import tempfile

import torch
import transformers

from hubformers.configuration_clip import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from hubformers.modeling_clip import contrastive_loss
from hubformers.scripts.benchmark import (
    MODES,
    Contender,
    Workload,
    add_attention_argument,
    load_quietly,
    peer_attention,
    place,
)
from hubformers.scripts.checkpoints import json_object
from hubformers.scripts.convert_open_clip import convert_weights, load_open_clip_model


def tower_flops(config: CLIPTextConfig | CLIPVisionConfig, tokens: int) -> float:
    """Multiply-adds of one tower's blocks on `tokens` tokens: projections, attention products, MLP."""
    width = config.hidden_size
    projections = tokens * (4 * width * width + 2 * width * config.intermediate_size)
    attention = 2 * tokens * tokens * width  # q k^T and weights @ v
    return config.num_hidden_layers * (projections + attention)


def clip_forward_flops(config: CLIPConfig, batch_size: int, text_length: int) -> float:
    """2 x the multiply-adds of both towers, the patch convolution and the projections; norms, softmax and
    activations are left out (a few % of the time, no matmul)."""
    vision, text = config.vision_config, config.text_config
    patches = vision.grid_size[0] * vision.grid_size[1]
    patch_h, patch_w = (
        (vision.patch_size, vision.patch_size) if isinstance(vision.patch_size, int) else vision.patch_size
    )
    embedding = patches * vision.num_channels * patch_h * patch_w * vision.hidden_size
    projections = (vision.hidden_size + text.hidden_size) * config.projection_dim
    per_pair = embedding + tower_flops(vision, patches + 1) + tower_flops(text, text_length) + projections
    return 2.0 * batch_size * per_pair + 2.0 * batch_size * batch_size * config.projection_dim


def workload(args: argparse.Namespace) -> Workload:
    reference_open_clip = load_open_clip_model(args.model, model_args=args.model_args)
    ours = convert_weights(reference_open_clip)
    attention = getattr(args, "attn_implementation", "sdpa")  # also run from a plain Namespace
    ours.set_attn_implementation(attention)
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        attention = peer_attention(transformers.CLIPModel, attention)
        reference = load_quietly(transformers.CLIPModel, folder, attn_implementation=attention)
    ours, reference, reference_open_clip = (place(args, model) for model in (ours, reference, reference_open_clip))
    config = ours.config
    text_length = config.text_config.max_position_embeddings
    pixel_values = place(args, torch.randn(args.batch_size, 3, *reference_open_clip.visual.image_size))
    # full-length texts: <|startoftext|>, random tokens, <|endoftext|> last
    input_ids = torch.randint(0, config.text_config.vocab_size - 2, (args.batch_size, text_length))
    input_ids[:, 0], input_ids[:, -1] = config.text_config.vocab_size - 2, config.text_config.vocab_size - 1
    input_ids = place(args, input_ids)

    def open_clip_logits() -> torch.Tensor:
        image = reference_open_clip.encode_image(pixel_values, normalize=True)
        text = reference_open_clip.encode_text(input_ids, normalize=True)
        return reference_open_clip.logit_scale.exp() * image @ text.t()

    def contender(name, model, logits) -> Contender:
        return Contender(name, model, forward=logits, loss=lambda: contrastive_loss(logits().t()))

    return Workload(
        description=f"CLIP {args.model}: {args.batch_size} images {tuple(pixel_values.shape[1:])} + "
        f"{args.batch_size} texts of {text_length} tokens",
        contenders=[
            contender("ours", ours, lambda: ours(input_ids=input_ids, pixel_values=pixel_values).logits_per_image),
            contender(
                "transformers",
                reference,
                lambda: reference(input_ids=input_ids, pixel_values=pixel_values).logits_per_image,
            ),
            contender("open_clip", reference_open_clip, open_clip_logits),
        ],
        forward_flops=clip_forward_flops(config, args.batch_size, text_length),
        modes=tuple(args.modes),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="ViT-B-32", help="open_clip ViT CLIP all three implementations take")
    parser.add_argument(
        "--model-args",
        type=json_object,
        default={},
        help="extra open_clip.create_model arguments as a JSON object, e.g. '{\"embed_dim\": 32}'",
    )
    add_attention_argument(parser)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="what to time (default: both)",
    )
