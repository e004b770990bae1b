"""`hubformers generate PROMPT --clip DIR --vae DIR --out FILE.png`: an image from text with a VAE and CLIP.

The VAE's latent is optimised so that CLIP scores the decoded image close to the prompt, the VAE prior keeping
it plausible (`hubformers.generate_image`). Several random restarts run at once and the best are kept; the
same `--seed` gives the same images. The PNG holds the kept images side by side, best first.

    hubformers generate "a photo of the digit three" --clip outputs/clip-digits --vae outputs/vae-digits \\
        --out three.png
"""

import argparse
from pathlib import Path

import PIL.Image
import torch
from transformers import AutoModel, AutoProcessor

import hubformers
from hubformers.text_to_image import GeneratedImages


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """The models and the optimisation settings, shared with `hubformers evaluate-generation`."""
    parser.add_argument("--clip", required=True, help="folder (or Hub id) of a hubformers CLIP model and processor")
    parser.add_argument("--vae", required=True, help="folder (or Hub id) of a hubformers VAE")
    parser.add_argument("--restarts", type=int, default=8, help="latents optimised at once. Default: %(default)s.")
    parser.add_argument("--steps", type=int, default=100, help="Adam steps. Default: %(default)s.")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="Default: %(default)s.")
    parser.add_argument(
        "--prior-weight",
        type=float,
        default=0.1,
        help="weight of -log p(z) per latent dimension. Default: %(default)s.",
    )
    parser.add_argument("--scale", type=int, default=8, help="PNG pixels per image pixel. Default: %(default)s.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help='what to draw, e.g. "a photo of the digit three"')
    add_generation_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="the PNG to write")
    parser.add_argument("--num-images", type=int, default=1, help="best restarts kept. Default: %(default)s.")
    parser.add_argument("--seed", type=int, default=0, help="Default: %(default)s.")


def load_models(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """CLIP, the VAE and CLIP's processor, for inference."""
    clip = AutoModel.from_pretrained(args.clip).eval()
    vae = AutoModel.from_pretrained(args.vae).eval()
    return clip, vae, AutoProcessor.from_pretrained(args.clip)


def generate(args: argparse.Namespace, models: tuple, prompt: str, seed: int, num_images: int = 1) -> GeneratedImages:
    clip, vae, processor = models
    return hubformers.generate_image(
        prompt,
        clip,
        vae,
        processor,
        num_restarts=args.restarts,
        num_images=num_images,
        steps=args.steps,
        learning_rate=args.learning_rate,
        prior_weight=args.prior_weight,
        seed=seed,
    )


def grid(rows: list[list[PIL.Image.Image]], scale: int) -> PIL.Image.Image:
    """Equal-sized images in rows, each pixel drawn as a scale x scale block, a block apart, on white."""
    width, height = rows[0][0].size
    step_x, step_y = width * scale + scale, height * scale + scale
    mode = "L" if all(image.mode == "L" for row in rows for image in row) else "RGB"
    columns = max(len(row) for row in rows)
    picture = PIL.Image.new(mode, (columns * step_x - scale, len(rows) * step_y - scale), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            tile = image.convert(mode).resize((width * scale, height * scale), PIL.Image.Resampling.NEAREST)
            picture.paste(tile, (c * step_x, r * step_y))
    return picture


def main(args: argparse.Namespace) -> None:
    result = generate(args, load_models(args), args.prompt, args.seed, args.num_images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid([result.images], args.scale).save(args.out)
    similarities = ", ".join(f"{value:.4f}" for value in result.similarities.tolist())
    print(f"{args.prompt!r}: CLIP similarity {similarities}; wrote {args.out}")
