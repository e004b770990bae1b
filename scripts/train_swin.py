"""Train a Swin Transformer classifier from scratch (`hubformers train swin`) and leave a Hub-ready folder.

As `hubformers train vit`: scikit-learn's digits (or Fashion-MNIST) through transformers' `Trainer`, the test
accuracy printed, and in `--output-dir` config.json, model.safetensors, preprocessor_config.json, the module
files for `trust_remote_code=True`, test_results.json and a README.md model card; `--push-to-hub REPO_ID`
uploads the folder. It runs as it is under `torchrun --nproc_per_node N` (gloo on CPUs).
"""

import argparse

from hubformers import SwinConfig, SwinForImageClassification
from hubformers.scripts.train_vit import IMAGE_SIZE, add_image_classification_arguments, train_image_classifier

# CPU-sized presets, far smaller than Swin-T: on 32x32 images 2x2 patches give a 16x16 map, windows of 4x4
# patches (shifted by 2), and each stage halves the map: 16 -> 8 (-> 4).
MODEL_SIZES = {
    "tiny": dict(embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=4, patch_size=2),
    "small": dict(embed_dim=48, depths=[2, 2, 2], num_heads=[3, 6, 12], window_size=4, patch_size=2),
    "base": dict(embed_dim=96, depths=[2, 2, 6], num_heads=[3, 6, 12], window_size=4, patch_size=2),
}
DROP_PATH_RATE = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sizes_help = "; ".join(
        f"{name}: width {s['embed_dim']}, depths {s['depths']}, heads {s['num_heads']}, window {s['window_size']}"
        for name, s in MODEL_SIZES.items()
    )
    image_help = f"({IMAGE_SIZE}x{IMAGE_SIZE} images, 2x2 patches)."
    add_image_classification_arguments(parser, MODEL_SIZES, f"{sizes_help} {image_help}")


def new_model(model_size: str, class_names: list[str]) -> SwinForImageClassification:
    preset = MODEL_SIZES[model_size]
    config = SwinConfig(
        **preset,
        image_size=IMAGE_SIZE,
        drop_path_rate=DROP_PATH_RATE,
        # the total stride, so the weights also suit SwinForMaskedImageModeling
        encoder_stride=preset["patch_size"] * 2 ** (len(preset["depths"]) - 1),
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
    )
    return SwinForImageClassification(config)


def swin_card_values(config: SwinConfig) -> dict:
    """What `model_cards/swin.md` asks for beyond `train_vit.card_values`."""
    return dict(
        embed_dim=config.embed_dim,
        depths=", ".join(map(str, config.depths)),
        num_heads=", ".join(map(str, config.num_heads)),
        window_size=config.window_size,
        drop_path_rate=config.drop_path_rate,
    )


def main(args: argparse.Namespace) -> None:
    train_image_classifier(args, "swin", lambda class_names: new_model(args.model_size, class_names), swin_card_values)
