"""Train a Swin Transformer classifier from scratch (`hubformers train swin`) and leave a Hub-ready folder.

As `hubformers train vit`: scikit-learn's digits (or Fashion-MNIST) through transformers' `Trainer`, the test
accuracy printed, and in `--output-dir` config.json, model.safetensors, preprocessor_config.json, the module
files for `trust_remote_code=True`, test_results.json and a README.md model card; `--push-to-hub REPO_ID`
uploads the folder. It runs as it is under `torchrun --nproc_per_node N` (gloo on CPUs).
"""

import argparse
from pathlib import Path

import torch
from transformers import Trainer, set_seed

from hubformers import SwinConfig, SwinForImageClassification, __version__
from hubformers.scripts.data import LOADERS, ImageDataset, load_image_dataset
from hubformers.scripts.model_card import write_model_card
from hubformers.scripts.train_vit import IMAGE_SIZE, ClassificationDataset, accuracy, new_image_processor
from hubformers.scripts.training import (
    WARMUP_FRACTION,
    add_training_arguments,
    describe_hardware,
    push_folder,
    training_arguments,
)

# CPU-sized presets, far smaller than Swin-T: on 32x32 images 2x2 patches give a 16x16 map, windows of 4x4
# patches (shifted by 2), and each stage halves the map: 16 -> 8 (-> 4).
MODEL_SIZES = {
    "tiny": dict(embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=4, patch_size=2),
    "small": dict(embed_dim=48, depths=[2, 2, 2], num_heads=[3, 6, 12], window_size=4, patch_size=2),
    "base": dict(embed_dim=96, depths=[2, 2, 6], num_heads=[3, 6, 12], window_size=4, patch_size=2),
}
WEIGHT_DECAY = 0.05
DROP_PATH_RATE = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        choices=sorted(LOADERS),
        default="digits",
        help="Training data, never downloaded: scikit-learn's digits (default), or Fashion-MNIST from the Debian "
        "package dataset-fashion-mnist.",
    )
    parser.add_argument(
        "--model-size",
        choices=list(MODEL_SIZES),
        default="small",
        help="; ".join(
            f"{name}: width {s['embed_dim']}, depths {s['depths']}, heads {s['num_heads']}, window {s['window_size']}"
            for name, s in MODEL_SIZES.items()
        )
        + f" ({IMAGE_SIZE}x{IMAGE_SIZE} images, 2x2 patches). Default: %(default)s.",
    )
    add_training_arguments(parser, epochs=15, batch_size=64, learning_rate=1e-3)
    parser.add_argument("--max-train-samples", type=int, help="Train on the first N training images only.")


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


def card_values(
    args: argparse.Namespace, dataset: ImageDataset, trainer: Trainer, train_metrics: dict, test_metrics: dict
) -> dict:
    """What `model_cards/swin.md` asks for."""
    repo_id = args.push_to_hub or str(args.output_dir)
    model, world_size = trainer.model, trainer.args.world_size
    config = model.config
    return dict(
        model_name=repo_id.rstrip("/").split("/")[-1],
        repo_id=repo_id,
        dataset_name=dataset.name,
        dataset_hub_id=dataset.hub_id,
        dataset_description=dataset.description,
        class_names=", ".join(dataset.class_names),
        num_classes=len(dataset.class_names),
        train_size=f"{len(trainer.train_dataset):,}",
        test_size=f"{len(dataset.test_labels):,}",
        accuracy=round(test_metrics["test_accuracy"], 4),
        accuracy_percent=f"{test_metrics['test_accuracy']:.2%}",
        image_size=IMAGE_SIZE,
        patch_size=config.patch_size,
        model_size=args.model_size,
        embed_dim=config.embed_dim,
        depths=", ".join(map(str, config.depths)),
        num_heads=", ".join(map(str, config.num_heads)),
        window_size=config.window_size,
        drop_path_rate=config.drop_path_rate,
        num_parameters=f"{model.num_parameters():,}",
        epochs=f"{args.epochs:g}",
        batch_size=args.batch_size * world_size,
        learning_rate=f"{args.learning_rate:g}",
        weight_decay=WEIGHT_DECAY,
        warmup_percent=f"{WARMUP_FRACTION:.0%}",
        seed=args.seed,
        train_minutes=f"{train_metrics['train_runtime'] / 60:.1f}",
        hardware=describe_hardware(world_size),
        hubformers_version=__version__,
        torch_version=torch.__version__,
    )


def main(args: argparse.Namespace) -> None:
    args.output_dir = args.output_dir or Path(f"outputs/swin-{args.dataset}")
    set_seed(args.seed)  # before the model is built: the seed fixes the initial weights too
    dataset = load_image_dataset(args.dataset)
    processor = new_image_processor()
    train_images, train_labels = dataset.train_images, dataset.train_labels
    if args.max_train_samples:
        train_images, train_labels = train_images[: args.max_train_samples], train_labels[: args.max_train_samples]
    train_set = ClassificationDataset(processor, train_images, train_labels)
    test_set = ClassificationDataset(processor, dataset.test_images, dataset.test_labels)
    model = new_model(args.model_size, dataset.class_names)

    trainer = Trainer(
        model=model,
        args=training_arguments(args, weight_decay=WEIGHT_DECAY),
        train_dataset=train_set,
        processing_class=processor,
        compute_metrics=accuracy,
    )
    train_metrics = trainer.train().metrics
    test_metrics = trainer.evaluate(test_set, metric_key_prefix="test")
    trainer.save_model()  # model, config, module files and processor; on rank 0 only
    if not trainer.is_world_process_zero():
        return
    trainer.save_metrics("test", test_metrics, combined=False)
    values = card_values(args, dataset, trainer, train_metrics, test_metrics)
    write_model_card("swin", values, args.output_dir / "README.md")
    print(f"test accuracy: {test_metrics['test_accuracy']:.4f} on {len(test_set):,} {dataset.name} test images")
    print(f"model saved to {args.output_dir}")
    if args.push_to_hub:
        print(f"pushed to {push_folder(args.output_dir, args.push_to_hub)}")
