"""Train the paper's VAE (`hubformers train vae`) and leave a Hub-ready folder with figures.

The default run trains the MLP VAE of Kingma & Welling (one hidden layer of 500 tanh units, Bernoulli decoder)
with a 2-D latent on binarised Fashion-MNIST (from the Debian package, when installed) or scikit-learn's
digits, with transformers' `Trainer` and a linear KL warm-up. It reports the test ELBO and the
importance-weighted log-likelihood (Burda et al.) in nats per image, and writes to `--output-dir` the model,
its image processor, samples.png, reconstructions.png (test images above their reconstructions),
interpolation.png, for a 2-D latent manifold.png (the paper's Figure 4), test_results.json and a README.md
model card. `--push-to-hub REPO_ID` then uploads the folder to the Hub at `HF_ENDPOINT`.
"""

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import Trainer, TrainerCallback, set_seed
from transformers.utils import is_torchvision_available

from hubformers import (
    VAEConfig,
    VAEImageProcessor,
    VAEImageProcessorPil,
    VAEModel,
    __version__,
)
from hubformers.scripts.data import (
    FASHION_MNIST_DIR,
    LOADERS,
    ImageDataset,
    load_image_dataset,
)
from hubformers.scripts.model_card import write_model_card
from hubformers.scripts.training import (
    add_training_arguments,
    describe_hardware,
    final_folder,
    non_negative_float,
    positive_int,
    prepare_output_dir,
    push_folder,
    save_metrics,
    training_arguments,
)

GRID_SCALE = 3  # each image pixel becomes GRID_SCALE x GRID_SCALE pixels in the PNG figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        choices=sorted(LOADERS),
        default="fashion-mnist" if FASHION_MNIST_DIR.is_dir() else "digits",
        help="Training data, never downloaded: Fashion-MNIST from the Debian package dataset-fashion-mnist "
        "(default where installed), or scikit-learn's digits. Default here: %(default)s.",
    )
    parser.add_argument(
        "--latent-size",
        type=positive_int,
        default=2,
        help="Latent dimensions (2 draws the manifold). Default: %(default)s.",
    )
    parser.add_argument(
        "--hidden-size", type=positive_int, default=500, help="Hidden units (the paper's 500). Default: %(default)s."
    )
    parser.add_argument(
        "--beta",
        type=non_negative_float,
        default=1.0,
        help="KL weight after warm-up (1: the ELBO). Default: %(default)s.",
    )
    parser.add_argument(
        "--kl-warmup-epochs",
        type=non_negative_float,
        default=2.0,
        help="Epochs over which the KL weight rises linearly from 0. Default: %(default)s.",
    )
    parser.add_argument(
        "--iw-samples",
        type=positive_int,
        default=100,
        help="Importance samples per test image for log p(x). Default: %(default)s.",
    )
    parser.add_argument("--max-train-samples", type=positive_int, help="Train on the first N training images only.")
    add_training_arguments(parser, epochs=20, batch_size=100, learning_rate=1e-3)


class ImageSet(torch.utils.data.Dataset):
    """Images through the VAE's processor (to [0, 1]), binarised at 0.5 for the Bernoulli likelihood."""

    def __init__(self, processor, images: np.ndarray):
        pixel_values = processor(
            [Image.fromarray(image, mode="L") for image in images], return_tensors="pt"
        ).pixel_values
        self.pixel_values = (pixel_values > 0.5).float()

    def __len__(self) -> int:
        return len(self.pixel_values)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[index]}


class KLWarmup(TrainerCallback):
    """beta rises linearly from 0 to its configured value over the first `epochs` epochs (Sønderby et al., 2016),
    so the decoder learns to use z before the KL term pulls the posterior to the prior."""

    def __init__(self, model: VAEModel, epochs: float):
        self.model, self.epochs, self.beta = model, epochs, model.config.beta

    def on_step_begin(self, args, state, control, **kwargs):
        progress = 1.0 if self.epochs <= 0 else min(1.0, (state.epoch or 0.0) / self.epochs)
        self.model.config.beta = self.beta * progress

    def on_train_end(self, args, state, control, **kwargs):
        self.model.config.beta = self.beta


def grid(images: torch.Tensor, columns: int) -> Image.Image:
    """(n, 1, h, w) values in [0, 1] -> one grayscale PNG-ready image, `columns` wide, one pixel of gap."""
    n, _, height, width = images.shape
    rows = math.ceil(n / columns)
    canvas = torch.ones(rows * (height + 1) + 1, columns * (width + 1) + 1)
    for i, image in enumerate(images[:, 0].clamp(0, 1)):
        top, left = 1 + (i // columns) * (height + 1), 1 + (i % columns) * (width + 1)
        canvas[top : top + height, left : left + width] = image
    picture = Image.fromarray((canvas * 255).round().to(torch.uint8).numpy(), mode="L")
    return picture.resize((picture.width * GRID_SCALE, picture.height * GRID_SCALE), Image.NEAREST)


def manifold(model: VAEModel, points: int = 20) -> torch.Tensor:
    """Decoded images on a grid of z through the Gaussian inverse CDF of evenly spaced quantiles (Figure 4)."""
    quantiles = torch.linspace(0.5 / points, 1 - 0.5 / points, points)
    values = torch.distributions.Normal(0.0, 1.0).icdf(quantiles)
    latents = torch.cartesian_prod(values.flip(0), values)[:, [1, 0]]  # rows: z2 from high to low; columns: z1
    return model.decode(latents.to(model.device)).sample


@torch.no_grad()
def test_metrics(model: VAEModel, test_set: ImageSet, iw_samples: int, batch_size: int = 500) -> dict[str, float]:
    """Per-image averages in nats: the ELBO (one posterior draw per image) and the importance-weighted log p(x)."""
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(0)
    elbo, log_likelihood = [], []
    for batch in test_set.pixel_values.split(batch_size):
        batch = batch.to(model.device)
        output = model(batch, generator=generator)
        elbo.append(-(output.reconstruction_loss + output.kl_loss).item() * len(batch))
        log_likelihood.append(model.log_likelihood(batch, iw_samples, generator=generator).sum().item())
    count = len(test_set)
    return {"test_elbo": sum(elbo) / count, "test_log_likelihood": sum(log_likelihood) / count}


@torch.no_grad()
def write_figures(model: VAEModel, test_set: ImageSet, folder: Path) -> list[str]:
    model.eval()
    columns = 10
    originals = test_set.pixel_values[: 2 * columns].to(model.device)
    reconstructions = model.reconstruct(originals)
    pairs = torch.cat([torch.cat([originals[i : i + columns], reconstructions[i : i + columns]]) for i in (0, columns)])
    figures = {
        "samples.png": grid(
            model.sample(100, generator=torch.Generator(device=model.device).manual_seed(0)).cpu(), columns
        ),
        "reconstructions.png": grid(pairs.cpu(), columns),
        "interpolation.png": grid(model.interpolate(originals[0], originals[1], steps=columns).cpu(), columns),
    }
    if model.config.latent_size == 2:
        figures["manifold.png"] = grid(manifold(model).cpu(), 20)
    for name, picture in figures.items():
        picture.save(folder / name)
    return list(figures)


def card_values(
    args, dataset: ImageDataset, trainer: Trainer, train_metrics: dict, metrics: dict, figures: list[str]
) -> dict:
    repo_id = args.push_to_hub or str(args.output_dir)
    model, world_size = trainer.model, trainer.args.world_size
    config = model.config
    return dict(
        model_name=repo_id.rstrip("/").split("/")[-1],
        repo_id=repo_id,
        dataset_name=dataset.name,
        dataset_hub_id=dataset.hub_id,
        dataset_description=dataset.description,
        train_size=f"{len(trainer.train_dataset):,}",
        test_size=f"{len(dataset.test_images):,}",
        test_elbo=round(metrics["test_elbo"], 2),
        test_log_likelihood=round(metrics["test_log_likelihood"], 2),
        iw_samples=args.iw_samples,
        image_size=config.image_size,
        hidden_size=config.hidden_size,
        latent_size=config.latent_size,
        beta=f"{args.beta:g}",
        kl_warmup_epochs=f"{args.kl_warmup_epochs:g}",
        num_parameters=f"{model.num_parameters():,}",
        epochs=f"{args.epochs:g}",
        batch_size=args.batch_size * world_size,
        learning_rate=f"{args.learning_rate:g}",
        seed=args.seed,
        train_minutes=f"{train_metrics['train_runtime'] / 60:.1f}",
        hardware=describe_hardware(world_size),
        hubformers_version=__version__,
        torch_version=torch.__version__,
        figures="\n".join(f"![{name}]({name})" for name in figures),
    )


def main(args: argparse.Namespace) -> None:
    args.output_dir = args.output_dir or Path(f"outputs/vae-{args.dataset}")
    checkpoint = prepare_output_dir(args)
    set_seed(args.seed)
    dataset = load_image_dataset(args.dataset)
    config = VAEConfig(
        architecture="mlp",
        num_channels=1,
        image_size=dataset.train_images.shape[-1],
        likelihood="bernoulli",
        hidden_size=args.hidden_size,
        latent_size=args.latent_size,
        beta=args.beta,
    )
    processor_class = VAEImageProcessor if is_torchvision_available() else VAEImageProcessorPil
    processor = processor_class.for_config(config)
    train_images = dataset.train_images[: args.max_train_samples] if args.max_train_samples else dataset.train_images
    train_set, test_set = ImageSet(processor, train_images), ImageSet(processor, dataset.test_images)
    model = VAEModel(config)

    trainer = Trainer(
        model=model,
        args=training_arguments(args),
        train_dataset=train_set,
        processing_class=processor,
        callbacks=[KLWarmup(model, args.kl_warmup_epochs)],
    )
    train_metrics = trainer.train(resume_from_checkpoint=checkpoint).metrics
    with final_folder(trainer) as folder:
        trainer.save_model(folder)
        if not trainer.is_world_process_zero():
            return
        metrics = test_metrics(trainer.model, test_set, args.iw_samples)
        save_metrics(folder, "test", metrics)
        figures = write_figures(trainer.model, test_set, folder)
        write_model_card(
            "vae", card_values(args, dataset, trainer, train_metrics, metrics, figures), folder / "README.md"
        )
    print(
        f"test ELBO {metrics['test_elbo']:.2f} nats, importance-weighted log p(x) {metrics['test_log_likelihood']:.2f} "
        f"nats (k={args.iw_samples}) per image, on {len(test_set):,} {dataset.name} test images"
    )
    print(f"model and figures saved to {args.output_dir}")
    if args.push_to_hub:
        print(f"pushed to {push_folder(args.output_dir, args.push_to_hub)}")
