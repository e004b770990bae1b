"""Train a CLIP on captioned digits (`hubformers train clip`), then classify held-out digits zero-shot.

Each training image of scikit-learn's digits (no download) gets a caption such as "a photo of the digit seven";
transformers' `Trainer` trains image and text towers with CLIP's contrastive loss through `CLIPCollator`. The
test images are then classified from text prompts alone (Radford et al., 2021, Section 3.1): each class's prompts
("a photo of the digit {}", ...) are embedded, averaged (prompt ensembling, Section 3.1.4) and the nearest class
wins. `--output-dir` gets config.json, model.safetensors, the processor (image processor and tokenizer), the
hubformers module files (for `trust_remote_code=True`), test_results.json and a README.md model card;
`--push-to-hub REPO_ID` uploads the folder. It runs as it is under `torchrun --nproc_per_node N` (the loss then
spans the global batch); rank 0 writes the folder.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from PIL import Image
from transformers import Trainer, set_seed
from transformers.utils import is_torchvision_available

from hubformers import (
    CLIPCollator,
    CLIPConfig,
    CLIPImageTextProcessor,
    CLIPModel,
    __version__,
    clip_image_processor,
    preprocess_pairs,
)
from hubformers.scripts.build_clip_tokenizer import build_clip_tokenizer
from hubformers.scripts.data import load_digits
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

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Training captions pick one of these per image; zero-shot classification averages all of them per class.
TEMPLATES = [
    "a photo of the digit {}",
    "a handwritten {}",
    "a picture of the number {}",
    "the digit {} written by hand",
    "a small blurry image of a {}",
]
IMAGE_SIZE = 32
CONTEXT_LENGTH = 16  # the captions' longest is 10 tokens with <|startoftext|> and <|endoftext|>
# CPU-sized towers: width, depth, heads, MLP width (text and image alike), 8x8 patches on 32x32 images.
MODEL_SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    "small": dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, intermediate_size=256),
}
PATCH_SIZE = 8
PROJECTION_DIM = 64
WEIGHT_DECAY = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-size",
        choices=list(MODEL_SIZES),
        default="small",
        help="; ".join(
            f"{name}: {s['hidden_size']} wide, {s['num_hidden_layers']} layers, {s['num_attention_heads']} heads"
            for name, s in MODEL_SIZES.items()
        )
        + " (both towers). Default: %(default)s.",
    )
    add_training_arguments(parser, epochs=30, batch_size=64, learning_rate=1e-3)
    parser.add_argument("--max-train-samples", type=positive_int, help="Train on the first N training images only.")


def new_processor() -> CLIPImageTextProcessor:
    """Digits are 8x8 grayscale: resize to 32x32 (no crop needed, they are square), RGB, CLIP's mean/std."""
    backend = "torchvision" if is_torchvision_available() else "pil"
    image_processor = clip_image_processor(IMAGE_SIZE, backend=backend)
    return CLIPImageTextProcessor(image_processor, build_clip_tokenizer(model_max_length=CONTEXT_LENGTH))


def captions(labels: np.ndarray, seed: int) -> list[str]:
    """One caption per image, its template drawn at random."""
    templates = np.random.default_rng(seed).integers(len(TEMPLATES), size=len(labels))
    return [TEMPLATES[t].format(NUMBER_WORDS[label]) for t, label in zip(templates, labels)]


def new_model(model_size: str, tokenizer) -> CLIPModel:
    tower = MODEL_SIZES[model_size]
    special_tokens = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    config = CLIPConfig(
        text_config=dict(**tower, max_position_embeddings=CONTEXT_LENGTH, **special_tokens),
        vision_config=dict(**tower, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE),
        projection_dim=PROJECTION_DIM,
    )
    return CLIPModel(config)


@torch.no_grad()
def zero_shot_accuracy(model: CLIPModel, processor: CLIPImageTextProcessor, images: np.ndarray, labels: np.ndarray):
    """Classify images by the nearest class prompt embedding (prompts averaged per class); (accuracy, predictions)."""
    model.eval()
    prompts = [template.format(word) for word in NUMBER_WORDS for template in TEMPLATES]
    text = processor.tokenizer(prompts, padding=True, return_tensors="pt").to(model.device)
    # (classes * templates, dim) -> (classes, dim): prompt ensembling on the unit sphere
    text_embeds = torch.nn.functional.normalize(model.get_text_features(**text).pooler_output, dim=-1)
    class_embeds = torch.nn.functional.normalize(
        text_embeds.view(len(NUMBER_WORDS), len(TEMPLATES), -1).mean(1), dim=-1
    )
    pixel_values = processor.image_processor(
        [Image.fromarray(image) for image in images], return_tensors="pt"
    ).pixel_values
    image_embeds = model.get_image_features(pixel_values.to(model.device)).pooler_output
    predictions = (torch.nn.functional.normalize(image_embeds, dim=-1) @ class_embeds.t()).argmax(-1).cpu().numpy()
    return float((predictions == labels).mean()), predictions


def card_values(args, dataset, trainer: Trainer, train_metrics: dict, accuracy: float) -> dict:
    """What `model_cards/clip.md` asks for."""
    repo_id = args.push_to_hub or str(args.output_dir)
    model, world_size = trainer.model, trainer.args.world_size
    tower = MODEL_SIZES[args.model_size]
    return dict(
        model_name=repo_id.rstrip("/").split("/")[-1],
        repo_id=repo_id,
        dataset_hub_id=dataset.hub_id,
        dataset_description=dataset.description,
        train_size=f"{len(trainer.train_dataset):,}",
        test_size=f"{len(dataset.test_labels):,}",
        accuracy=round(accuracy, 4),
        accuracy_percent=f"{accuracy:.2%}",
        templates="\n".join(f'- "{template.format("...")}"' for template in TEMPLATES),
        model_size=args.model_size,
        hidden_size=tower["hidden_size"],
        num_hidden_layers=tower["num_hidden_layers"],
        num_attention_heads=tower["num_attention_heads"],
        intermediate_size=tower["intermediate_size"],
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        context_length=CONTEXT_LENGTH,
        projection_dim=PROJECTION_DIM,
        num_parameters=f"{model.num_parameters():,}",
        epochs=f"{args.epochs:g}",
        batch_size=args.batch_size * world_size,
        learning_rate=f"{args.learning_rate:g}",
        weight_decay=WEIGHT_DECAY,
        warmup_percent=f"{WARMUP_FRACTION:.0%}",
        logit_scale=f"{model.logit_scale_value().item():.1f}",
        seed=args.seed,
        train_minutes=f"{train_metrics['train_runtime'] / 60:.1f}",
        hardware=describe_hardware(world_size),
        hubformers_version=__version__,
        torch_version=torch.__version__,
    )


def main(args: argparse.Namespace) -> None:
    args.output_dir = args.output_dir or Path("outputs/clip-digits")
    checkpoint = prepare_output_dir(args)
    set_seed(args.seed)  # before the model is built: the seed fixes the initial weights too
    dataset = load_digits()
    processor = new_processor()
    images, labels = dataset.train_images, dataset.train_labels
    if args.max_train_samples:
        images, labels = images[: args.max_train_samples], labels[: args.max_train_samples]
    pairs = Dataset.from_dict({"image": [Image.fromarray(i) for i in images], "caption": captions(labels, args.seed)})
    train_set = pairs.map(preprocess_pairs(processor), batched=True, remove_columns=pairs.column_names)
    model = new_model(args.model_size, processor.tokenizer)

    trainer = Trainer(
        model=model,
        args=training_arguments(args, weight_decay=WEIGHT_DECAY),
        train_dataset=train_set,
        data_collator=CLIPCollator(processor),
        processing_class=processor,
    )
    train_metrics = trainer.train(resume_from_checkpoint=checkpoint).metrics
    with final_folder(trainer) as folder:
        trainer.save_model(folder)  # model, config, module files and processor; on rank 0 only
        if not trainer.is_world_process_zero():
            return
        accuracy, _ = zero_shot_accuracy(trainer.model, processor, dataset.test_images, dataset.test_labels)
        save_metrics(folder, "test", {"test_zero_shot_accuracy": accuracy})
        write_model_card("clip", card_values(args, dataset, trainer, train_metrics, accuracy), folder / "README.md")
    print(f"zero-shot accuracy: {accuracy:.4f} on {len(dataset.test_labels):,} held-out digits (text prompts only)")
    print(f"model saved to {args.output_dir}")
    if args.push_to_hub:
        print(f"pushed to {push_folder(args.output_dir, args.push_to_hub)}")
