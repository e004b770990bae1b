"""`hubformers convert timm NAME_OR_FOLDER --output-dir DIR`: a timm model as a hubformers folder.

The model is built from its timm name (random weights unless `--checkpoint` gives a local file) or from a
folder written by timm's `save_for_hf` (which brings its own weights): nothing comes from the network. Its
class picks the converter (`TIMM_ARCHITECTURES`: `convert_timm_vit`, `convert_timm_swin`). The folder holds
our model's `save_pretrained` output and an image processor configured like timm's evaluation preprocessing,
and the conversion checks that our logits equal timm's.
"""

import argparse
from collections.abc import Callable
from pathlib import Path

from torch import nn

from hubformers.scripts.checkpoints import add_checkpoint_arguments, json_object
from hubformers.scripts.convert_timm_swin import convert_timm_swin
from hubformers.scripts.convert_timm_vit import convert_timm_vit
from hubformers.scripts.timm_models import load_timm_model

# timm model class -> its converter.
TIMM_ARCHITECTURES = {"VisionTransformer": convert_timm_vit, "SwinTransformer": convert_timm_swin}


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
