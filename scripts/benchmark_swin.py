"""Swin: ours vs transformers' SwinForImageClassification vs timm's SwinTransformer, on the same weights.

A timm Swin (Swin-T by default: embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7) is built with random
weights and converted to ours; ours is saved and loaded by transformers' Swin (the checkpoint layout is
shared). transformers and ours run sdpa attention, timm its default path. All three run without stochastic
depth (timm's Swin defaults to a drop-path rate of 0.1, which in training mode would add work to timm alone).
The loss of the forward+backward mode is the cross-entropy of the logits on random labels.
"""

import argparse
import tempfile

import torch
import torch.nn.functional as F
import transformers

from hubformers.configuration_swin import SwinConfig
from hubformers.configuration_utils import to_pair
from hubformers.scripts.benchmark import (
    Contender,
    Workload,
    add_attention_argument,
    load_quietly,
    peer_attention,
    place,
)
from hubformers.scripts.checkpoints import json_object
from hubformers.scripts.convert_timm_swin import convert_timm_swin
from hubformers.scripts.timm_models import import_timm


def swin_forward_flops(config: SwinConfig, batch_size: int, image_size: tuple[int, int]) -> float:
    """2 x the multiply-adds of the patch convolution, the projections, the window attention products, patch
    merging and the head; norms, softmax and GELU are left out. Maps are assumed to be whole windows."""
    (patch_h, patch_w), dim = to_pair(config.patch_size), config.embed_dim
    tokens = (image_size[0] // patch_h) * (image_size[1] // patch_w)
    window_tokens = config.window_size**2
    total = tokens * config.num_channels * patch_h * patch_w * dim
    for stage, depth in enumerate(config.depths):
        mlp = int(config.mlp_ratio * dim)
        block = tokens * (4 * dim * dim + 2 * dim * mlp) + 2 * tokens * window_tokens * dim
        total += depth * block
        if stage < len(config.depths) - 1:
            tokens //= 4
            total += tokens * 4 * dim * 2 * dim
            dim *= 2
    return 2.0 * batch_size * (total + dim * config.num_labels)


def workload(args: argparse.Namespace) -> Workload:
    image_size = {"img_size": args.image_size} if args.image_size else {}
    model_args = {"drop_path_rate": 0.0, **args.model_args, **image_size}
    timm_model = import_timm().create_model(args.model, pretrained=False, **model_args).eval()
    ours = convert_timm_swin(timm_model)
    ours.set_attn_implementation(args.attn_implementation)
    reference_class = transformers.SwinForImageClassification
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        attention = peer_attention(reference_class, args.attn_implementation)
        reference = load_quietly(reference_class, folder, attn_implementation=attention)
    ours, reference, timm_model = (place(args, model) for model in (ours, reference, timm_model))
    config = ours.config
    image_size = to_pair(config.image_size)
    inputs = place(args, torch.randn(args.batch_size, config.num_channels, *image_size))
    labels = place(args, torch.randint(0, config.num_labels, (args.batch_size,)))

    def contender(name, model, logits) -> Contender:
        return Contender(
            name, model, forward=lambda: logits(inputs), loss=lambda: F.cross_entropy(logits(inputs), labels)
        )

    return Workload(
        description=f"Swin {args.model} {tuple(inputs.shape[1:])}",
        contenders=[
            contender("ours", ours, lambda x: ours(x).logits),
            contender("transformers", reference, lambda x: reference(x).logits),
            contender("timm", timm_model, timm_model),
        ],
        forward_flops=swin_forward_flops(config, args.batch_size, image_size),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="swin_tiny_patch4_window7_224", help="timm Swin whose architecture all three take"
    )
    parser.add_argument("--image-size", type=int, help="input side (default: the model's)")
    parser.add_argument(
        "--model-args",
        type=json_object,
        default={},
        help='extra timm.create_model arguments as a JSON object, e.g. \'{"embed_dim": 32, "depths": [2, 2]}\'',
    )
    add_attention_argument(parser)
