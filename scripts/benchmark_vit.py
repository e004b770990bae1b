"""ViT: ours vs transformers' ViTForImageClassification vs timm's VisionTransformer, on the same weights.

A timm ViT (ViT-B/16 by default) is built with random weights and converted to ours; ours is saved and
loaded by transformers' ViT (the checkpoint layout is shared). All three run sdpa attention. The loss of the
forward+backward mode is the cross-entropy of the logits on random labels.
"""

import argparse
import tempfile
from collections.abc import Callable

import torch
import torch.nn.functional as F
import transformers
from torch import nn

from hubformers.configuration_utils import to_pair
from hubformers.configuration_vit import ViTConfig
from hubformers.scripts.benchmark import (
    Contender,
    Workload,
    add_attention_argument,
    load_quietly,
    peer_attention,
    place,
)
from hubformers.scripts.checkpoints import json_object
from hubformers.scripts.convert_timm_vit import convert_timm_vit
from hubformers.scripts.timm_models import import_timm


def vit_forward_flops(config: ViTConfig, batch_size: int) -> float:
    """2 x the multiply-adds of the patch convolution, the projections, the attention products and the
    head on the class token; norms, softmax and GELU are left out (a few % of the time, no matmul). This is
    the peers' work: ours computes the class token alone in the last layer, so its GFLOP/s are effective."""
    (grid_h, grid_w), (patch_h, patch_w) = config.grid_size, to_pair(config.patch_size)
    patches, width = grid_h * grid_w, config.hidden_size
    tokens = patches + 1
    embedding = patches * config.num_channels * patch_h * patch_w * width
    projections = tokens * (4 * width * width + 2 * width * config.intermediate_size)
    attention = 2 * tokens * tokens * width  # q k^T and weights @ v
    head = width * config.num_labels
    return 2.0 * batch_size * (embedding + config.num_hidden_layers * (projections + attention) + head)


def workload(args: argparse.Namespace) -> Workload:
    """A timm ViT with random weights, converted to ours, ours saved and loaded by transformers' ViT (the
    checkpoint layout is shared): three implementations of the same weights, by default all on sdpa attention."""
    model_args = {**args.model_args, **({"img_size": args.image_size} if args.image_size else {})}
    timm_model = import_timm().create_model(args.model, pretrained=False, **model_args)
    ours = convert_timm_vit(timm_model)
    ours.set_attn_implementation(args.attn_implementation)
    reference_class = transformers.ViTForImageClassification
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        attention = peer_attention(reference_class, args.attn_implementation)
        reference = load_quietly(reference_class, folder, attn_implementation=attention)
    ours, reference, timm_model = (place(args, model) for model in (ours, reference, timm_model))
    config = ours.config
    inputs = place(args, torch.randn(args.batch_size, config.num_channels, *to_pair(config.image_size)))
    labels = place(args, torch.randint(0, config.num_labels, (args.batch_size,)))

    def contender(name: str, model: nn.Module, logits: Callable[[torch.Tensor], torch.Tensor]) -> Contender:
        return Contender(
            name, model, forward=lambda: logits(inputs), loss=lambda: F.cross_entropy(logits(inputs), labels)
        )

    return Workload(
        description=f"ViT {args.model} {tuple(inputs.shape[1:])}",
        contenders=[
            contender("ours", ours, lambda x: ours(x).logits),
            contender("transformers", reference, lambda x: reference(x).logits),
            contender("timm", timm_model, timm_model),
        ],
        forward_flops=vit_forward_flops(config, args.batch_size),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="vit_base_patch16_224", help="timm ViT whose architecture all three implementations take"
    )
    parser.add_argument("--image-size", type=int, help="input side (default: the model's)")
    parser.add_argument(
        "--model-args",
        type=json_object,
        default={},
        help='extra timm.create_model arguments as a JSON object, e.g. \'{"embed_dim": 32, "depth": 2}\'',
    )
    add_attention_argument(parser)
