"""`hubformers convert diffusers DIR --output-dir OUT`: a diffusers `AutoencoderKL` folder as a hubformers VAE.

DIR is an `AutoencoderKL` folder (config.json + diffusion_pytorch_model.safetensors), such as a Stable
Diffusion VAE, or a pipeline folder with one in `vae/`. Our conv VAE keeps diffusers' module names, so the
weights load as they are (attention keys of older checkpoints, query/key/value/proj_attn, are renamed); the
config maps field by field, and a variant our VAE cannot express is refused with a ValueError. When diffusers
is installed the conversion checks that latents and reconstructions equal diffusers' (fp32, <= 1e-4).
"""

import argparse
import json
from functools import partial
from pathlib import Path

import torch

from hubformers import VAEConfig, VAEImageProcessor, VAEModel
from hubformers.scripts.checkpoints import read_checkpoint
from hubformers.scripts.conversion import verify_and_save

TOLERANCE = 1e-4
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# diffusers' AutoencoderKL config field -> ours, where the names differ
RENAMED_FIELDS = {"act_fn": "hidden_act", "sample_size": "image_size", "in_channels": "num_channels"}
COPIED_FIELDS = (
    "block_out_channels",
    "layers_per_block",
    "norm_num_groups",
    "latent_channels",
    "mid_block_add_attention",
    "scaling_factor",
    "shift_factor",
    "use_quant_conv",
    "use_post_quant_conv",
    # read by diffusers' pipelines from the VAE's config (SDXL's force_upcast, latents' statistics)
    "force_upcast",
    "latents_mean",
    "latents_std",
)
# keys of checkpoints saved before diffusers renamed its attention block
LEGACY_ATTENTION_KEYS = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="an AutoencoderKL folder, or a pipeline folder with one in vae/")
    parser.add_argument("--output-dir", required=True, type=Path, help="where the hubformers folder goes")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow diffusion_pytorch_model.bin (read with torch.load(weights_only=True)); only for files you trust",
    )


def main(args: argparse.Namespace) -> None:
    model = convert(args.folder, args.output_dir, args.allow_pickle)
    config = model.config
    print(
        f"Converted AutoencoderKL ({config.block_out_channels} channels, {config.latent_channels} latent channels, "
        f"scaling factor {config.scaling_factor:g}) to {args.output_dir}"
    )


def vae_folder(folder: Path) -> Path:
    for candidate in (folder, folder / "vae"):
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(f"{folder} holds no config.json (nor vae/config.json) of an AutoencoderKL.")


def vae_config(diffusers_config: dict) -> VAEConfig:
    """Our config from diffusers' config.json, or a ValueError naming what our VAE cannot express."""
    class_name = diffusers_config.get("_class_name", "AutoencoderKL")
    if class_name != "AutoencoderKL":
        raise ValueError(f"Only diffusers' AutoencoderKL converts, got {class_name}.")
    blocks = len(diffusers_config["block_out_channels"])
    expected = {
        "down_block_types": ["DownEncoderBlock2D"] * blocks,
        "up_block_types": ["UpDecoderBlock2D"] * blocks,
        "out_channels": diffusers_config.get("in_channels", 3),
    }
    for field, value in expected.items():
        got = diffusers_config.get(field, value)
        if (list(got) if isinstance(got, (list, tuple)) else got) != value:
            raise ValueError(f"Our VAE needs {field}={value!r} in the AutoencoderKL config, got {got!r}.")
    fields = {ours: diffusers_config[theirs] for theirs, ours in RENAMED_FIELDS.items() if theirs in diffusers_config}
    fields |= {name: diffusers_config[name] for name in COPIED_FIELDS if name in diffusers_config}
    if isinstance(fields.get("image_size"), (list, tuple)):
        fields["image_size"] = fields["image_size"][0]
    return VAEConfig(architecture="conv", likelihood="gaussian", **fields)


def renamed_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in state.items():
        for old, new in LEGACY_ATTENTION_KEYS.items():
            if old in key and ".attentions." in key:
                key = key.replace(old, new)
                value = value.flatten(1) if value.ndim == 4 else value  # 1x1 conv weights of the original LDM
        renamed[key] = value
    return renamed


def convert(folder: Path, output_dir: Path, allow_pickle: bool = False) -> VAEModel:
    """Convert, save with an image processor, check against diffusers where installed; our model."""
    folder = vae_folder(folder)
    config = vae_config(json.loads((folder / "config.json").read_text()))
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{folder} holds no {' or '.join(WEIGHT_FILES)}.")
    model = VAEModel(config).eval()
    model.load_state_dict(renamed_state(read_checkpoint(weights, allow_pickle)), strict=True)
    verify_and_save(
        model, partial(check_against_diffusers, folder=folder), output_dir, VAEImageProcessor.for_config(config)
    )
    return model


def check_against_diffusers(model: VAEModel, folder: Path) -> None:
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        print("diffusers is not installed: the conversion is not checked against it.")
        return
    reference = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).eval()
    size = 2 * model.config.downsampling_factor
    pixel_values = (
        torch.rand(1, model.config.num_channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )
    with torch.no_grad():
        expected = reference.encode(pixel_values).latent_dist.mean
        latents = model.encode(pixel_values).latents
        differences = {
            "latents": (expected - latents).abs().max().item(),
            "reconstructions": (reference.decode(expected).sample - model.decode(latents).sample).abs().max().item(),
        }
    if max(differences.values()) > TOLERANCE:
        raise ValueError(f"The converted VAE differs from diffusers' by more than {TOLERANCE}: {differences}.")
    print("max abs difference to diffusers: " + ", ".join(f"{name} {value:.2e}" for name, value in differences.items()))


__all__ = ["convert"]
