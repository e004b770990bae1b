"""`hubformers evaluate-generation`: does text-to-image draw what it is asked? A judge that played no part decides.

Each digit prompt ("a photo of the digit zero" ... "nine") is generated with several seeds
(`hubformers.generate_image`, a VAE guided by CLIP); a separate classifier (e.g. a ViT from `hubformers train
vit` on the same digits) classifies every image, and the share it recognises as the prompted digit is the score:
CLIP alone cannot fool it. Writes a grid PNG (a row per seed, a column per digit) and the figures as JSON.

    hubformers evaluate-generation --clip outputs/clip-digits --vae outputs/vae-digits \\
        --classifier outputs/vit-digits --seeds 5 --out outputs/text-to-image.png
"""

import argparse
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoImageProcessor, AutoModelForImageClassification

from hubformers.scripts.generate import add_generation_arguments, generate, grid, load_models

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_generation_arguments(parser)
    parser.add_argument("--classifier", required=True, help="folder (or Hub id) of the judging image classifier")
    parser.add_argument("--template", default="a photo of the digit {}", help="prompt, {} is the digit's word")
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)), help="Default: all ten.")
    parser.add_argument("--seeds", type=int, default=5, help="images per prompt (seeds 0..N-1). Default: %(default)s.")
    parser.add_argument("--out", required=True, type=Path, help="the grid PNG; the figures go next to it as .json")


def classify(folder: str, images: list) -> list[int]:
    """The classifier's predicted class index for each PIL image, through its own processor."""
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**processor(images=[image.convert("RGB") for image in images], return_tensors="pt")).logits
    return logits.argmax(-1).tolist()


def evaluate(args: argparse.Namespace) -> dict:
    """Generate every (digit, seed) image, classify them all; the figures and the images."""
    models = load_models(args)
    cases = [(digit, seed) for seed in range(args.seeds) for digit in args.digits]
    results = []
    for digit, seed in tqdm(cases, desc="prompts x seeds"):
        generated = generate(args, models, args.template.format(NUMBER_WORDS[digit]), seed)
        results.append((digit, seed, generated.images[0], generated.similarities[0].item()))
    predictions = classify(args.classifier, [image for _, _, image, _ in results])
    recognised = [prediction == digit for (digit, *_), prediction in zip(results, predictions)]
    return {
        "accuracy": sum(recognised) / len(recognised),
        "images": len(recognised),
        "per_digit": {
            NUMBER_WORDS[d]: sum(ok for (digit, *_), ok in zip(results, recognised) if digit == d) / args.seeds
            for d in args.digits
        },
        "cases": [
            {"digit": digit, "seed": seed, "similarity": similarity, "predicted": prediction}
            for (digit, seed, _, similarity), prediction in zip(results, predictions)
        ],
        "rows": [[image for (_, s, image, _) in results if s == seed] for seed in range(args.seeds)],
    }


def main(args: argparse.Namespace) -> None:
    figures = evaluate(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid(figures.pop("rows"), args.scale).save(args.out)
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2))
    print(
        f"the classifier recognises the prompted digit in {figures['accuracy']:.1%} of {figures['images']} "
        f"generated images; grid in {args.out}"
    )
