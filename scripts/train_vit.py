"""Train a ViT classifier from scratch (`hubformers train vit`) and leave a Hub-ready folder.

The default run trains a small ViT on scikit-learn's digits (no download) with transformers' `Trainer`, prints
the test accuracy, and writes to `--output-dir`: config.json (with the class names), model.safetensors,
preprocessor_config.json, the hubformers module files (for `trust_remote_code=True`), test_results.json and a
README.md model card. `--push-to-hub REPO_ID` then uploads the folder to the Hub at `HF_ENDPOINT`.
It runs as it is under `torchrun --nproc_per_node N` (gloo on CPUs); rank 0 writes the folder.
"""

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import EvalPrediction, PretrainedConfig, PreTrainedModel, Trainer, set_seed
from transformers.utils import is_torchvision_available

from hubformers import ViTConfig, ViTForImageClassification, ViTImageProcessor, ViTImageProcessorPil, __version__
from hubformers.scripts.data import LOADERS, ImageDataset, load_image_dataset
from hubformers.scripts.model_card import write_model_card
from hubformers.scripts.training import (
    WARMUP_FRACTION,
    add_training_arguments,
    describe_hardware,
    final_folder,
    positive_int,
    prepare_output_dir,
    push_folder,
    save_metrics,
    training_arguments,
)

# CPU-sized presets, far smaller than the paper's ViT-Ti/S/B: width, depth, heads, MLP width, patch size.
# On 32x32 images, 8x8 patches give 16 tokens (each two by two pixels of an 8x8 digit): "small" reaches 96-98%
# on digits in under a minute of training on 2 idle CPU cores; 4x4 patches (64 tokens) see more detail.
MODEL_SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, patch_size=8),
    "small": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=6, intermediate_size=384, patch_size=8),
    "base": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=768, patch_size=4),
}
IMAGE_SIZE = 32
WEIGHT_DECAY = 0.05


def add_image_classification_arguments(parser: argparse.ArgumentParser, model_sizes: dict, sizes_help: str) -> None:
    """The options `hubformers train vit` and `train swin` share; `sizes_help` describes the `--model-size` presets."""
    parser.add_argument(
        "--dataset",
        choices=sorted(LOADERS),
        default="digits",
        help="Training data, never downloaded: scikit-learn's digits (default), or Fashion-MNIST from the Debian "
        "package dataset-fashion-mnist.",
    )
    parser.add_argument(
        "--model-size", choices=list(model_sizes), default="small", help=f"{sizes_help} Default: %(default)s."
    )
    add_training_arguments(parser, epochs=15, batch_size=64, learning_rate=1e-3)
    parser.add_argument("--max-train-samples", type=positive_int, help="Train on the first N training images only.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sizes_help = "; ".join(
        f"{name}: {s['hidden_size']} wide, {s['num_hidden_layers']} layers, {s['num_attention_heads']} heads, "
        f"{s['patch_size']}x{s['patch_size']} patches"
        for name, s in MODEL_SIZES.items()
    )
    add_image_classification_arguments(parser, MODEL_SIZES, f"{sizes_help} (on {IMAGE_SIZE}x{IMAGE_SIZE} images).")


def new_image_processor() -> ViTImageProcessor | ViTImageProcessorPil:
    """The processor saved with the model: resize, grayscale -> RGB, rescale and normalise to [-1, 1]."""
    # The backend AutoImageProcessor would pick: torchvision where installed, PIL otherwise (same numbers).
    processor_class = ViTImageProcessor if is_torchvision_available() else ViTImageProcessorPil
    return processor_class(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_convert_rgb=True)


class ClassificationDataset(torch.utils.data.Dataset):
    """Preprocessed images and their labels, as the dicts `Trainer`'s default collator batches."""

    def __init__(self, processor, images: np.ndarray, labels: np.ndarray):
        # The processor sees PIL images, as it will on the Hub, so training and inference preprocess alike.
        self.pixel_values = processor([Image.fromarray(image) for image in images], return_tensors="pt").pixel_values
        self.labels = torch.as_tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}


def new_model(model_size: str, class_names: list[str]) -> ViTForImageClassification:
    config = ViTConfig(
        **MODEL_SIZES[model_size],
        image_size=IMAGE_SIZE,
        encoder_stride=MODEL_SIZES[model_size]["patch_size"],  # so the weights also suit ViTForMaskedImageModeling
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
    )
    return ViTForImageClassification(config)


def accuracy(prediction: EvalPrediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def card_values(
    args: argparse.Namespace, dataset: ImageDataset, trainer: Trainer, train_metrics: dict, test_metrics: dict
) -> dict:
    """What every image classifier's model card asks for: the data, the accuracy, the training run."""
    repo_id = args.push_to_hub or str(args.output_dir)
    model, world_size = trainer.model, trainer.args.world_size
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
        patch_size=model.config.patch_size,
        model_size=args.model_size,
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


def vit_card_values(config: ViTConfig) -> dict:
    """What `model_cards/vit.md` asks for beyond `card_values`."""
    return dict(
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
    )


def train_image_classifier(
    args: argparse.Namespace,
    architecture: str,
    new_model: Callable[[list[str]], PreTrainedModel],
    architecture_card_values: Callable[[PretrainedConfig], dict],
) -> None:
    """What `hubformers train vit` and `train swin` share: data, Trainer, test accuracy, the folder and its
    model card (`model_cards/ARCHITECTURE.md`), and the push. `new_model(class_names)` builds the classifier."""
    args.output_dir = args.output_dir or Path(f"outputs/{architecture}-{args.dataset}")
    checkpoint = prepare_output_dir(args)
    set_seed(args.seed)  # before the model is built: the seed fixes the initial weights too
    dataset = load_image_dataset(args.dataset)
    processor = new_image_processor()
    train_images, train_labels = dataset.train_images, dataset.train_labels
    if args.max_train_samples:
        train_images, train_labels = train_images[: args.max_train_samples], train_labels[: args.max_train_samples]
    train_set = ClassificationDataset(processor, train_images, train_labels)
    test_set = ClassificationDataset(processor, dataset.test_images, dataset.test_labels)
    model = new_model(dataset.class_names)

    trainer = Trainer(
        model=model,
        args=training_arguments(args, weight_decay=WEIGHT_DECAY),
        train_dataset=train_set,
        processing_class=processor,
        compute_metrics=accuracy,
    )
    train_metrics = trainer.train(resume_from_checkpoint=checkpoint).metrics
    test_metrics = trainer.evaluate(test_set, metric_key_prefix="test")
    with final_folder(trainer) as folder:
        trainer.save_model(folder)  # model, config, module files and processor; on rank 0 only
        if not trainer.is_world_process_zero():
            return
        save_metrics(folder, "test", test_metrics)
        values = card_values(args, dataset, trainer, train_metrics, test_metrics)
        values.update(architecture_card_values(trainer.model.config))
        write_model_card(architecture, values, folder / "README.md")
    print(f"test accuracy: {test_metrics['test_accuracy']:.4f} on {len(test_set):,} {dataset.name} test images")
    print(f"model saved to {args.output_dir}")
    if args.push_to_hub:
        print(f"pushed to {push_folder(args.output_dir, args.push_to_hub)}")


def main(args: argparse.Namespace) -> None:
    train_image_classifier(args, "vit", lambda class_names: new_model(args.model_size, class_names), vit_card_values)
