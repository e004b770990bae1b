"""`hubformers zero-shot IMAGE --labels "a cat,a dog" --model DIR`: rank text labels for an image with a CLIP model.

Runs transformers' zero-shot-image-classification pipeline on the model folder or Hub repo and prints each label
with its probability (softmax over the labels of the scaled image-text similarities), best first.
"""

import argparse

from PIL import Image
from transformers import pipeline

import hubformers  # noqa: F401  (registers the CLIP classes with transformers' Auto classes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="An image file.")
    parser.add_argument("--labels", required=True, help='Comma-separated candidate labels: "a cat,a dog,a car".')
    parser.add_argument("--model", required=True, help="A CLIP folder or Hub repo id (with its processor).")
    parser.add_argument(
        "--template",
        default="{}",
        help='Prompt each label goes into, e.g. "a photo of {}." Default: the label as it is.',
    )


def parse_labels(text: str) -> list[str]:
    labels = [label.strip() for label in text.split(",") if label.strip()]
    if len(labels) < 2:
        raise ValueError(f"--labels needs at least two comma-separated labels, got {labels}.")
    return labels


def rank(image_path: str, labels: list[str], model: str, template: str = "{}") -> list[dict]:
    """[{"label": ..., "score": ...}, ...], best first."""
    if "{}" not in template:
        raise ValueError(f'--template must contain "{{}}" where the label goes, got {template!r}.')
    classify = pipeline("zero-shot-image-classification", model=model)
    return classify(Image.open(image_path), candidate_labels=labels, hypothesis_template=template)


def main(args: argparse.Namespace) -> None:
    for prediction in rank(args.image, parse_labels(args.labels), args.model, args.template):
        print(f"{prediction['score']:.4f}  {prediction['label']}")
