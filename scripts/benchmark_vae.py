"""VAE: ours vs diffusers' AutoencoderKL on the same weights: encode + decode of images.

`hubformers benchmark vae` times the conv VAE in the Stable Diffusion shape (channels 128-256-512-512, 2 layers
per block, 4 latent channels) by default on one 256x256 image: encode to the posterior mean, then decode. Both
take the same random weights (our module names are diffusers'), and their outputs are compared.

`python -m hubformers.scripts.benchmark_vae tiling` measures tiled decoding instead, each figure in a fresh
process: the peak memory (resident set growth over the decode, from the kernel's high-water mark) of our
untiled and tiled decode of one latent, and the max abs difference of ours tiled vs untiled and of diffusers'
tiled vs untiled on a random latent, next to the output's range.
"""

import argparse
import json
import subprocess
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from hubformers import VAEConfig, VAEModel
from hubformers.scripts.benchmark import Contender, Workload, add_attention_argument, place


def diffusers_twin(model: VAEModel):
    """diffusers' AutoencoderKL with the same config and weights."""
    from diffusers import AutoencoderKL

    config = model.config
    blocks = len(config.block_out_channels)
    reference = AutoencoderKL(
        in_channels=config.num_channels,
        out_channels=config.num_channels,
        down_block_types=["DownEncoderBlock2D"] * blocks,
        up_block_types=["UpDecoderBlock2D"] * blocks,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        norm_num_groups=config.norm_num_groups,
        latent_channels=config.latent_channels,
        mid_block_add_attention=config.mid_block_add_attention,
        sample_size=config.image_size,
    )
    reference.load_state_dict(model.state_dict(), strict=True)
    return reference.eval()


def new_model(channels: list[int], layers_per_block: int, image_size: int) -> VAEModel:
    config = VAEConfig(
        architecture="conv",
        num_channels=3,
        likelihood="gaussian",
        image_size=image_size,
        block_out_channels=channels,
        layers_per_block=layers_per_block,
        norm_num_groups=min(32, min(channels)),
        latent_channels=4,
        scaling_factor=0.18215,
    )
    return VAEModel(config).eval()


def counted_flops(function) -> float:
    """FLOPs of one call, as torch's flop counter sees them (convolutions, matmuls, attention)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        function()
    return float(counter.get_total_flops())


def workload(args: argparse.Namespace) -> Workload:
    ours = new_model(args.channels, args.layers_per_block, args.image_size)
    ours.set_attn_implementation(args.attn_implementation)
    reference = diffusers_twin(ours)
    ours, reference = place(args, ours), place(args, reference)
    pixel_values = place(args, torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1)

    def ours_round_trip() -> torch.Tensor:
        return ours.decode(ours.encode(pixel_values).latents).sample

    def diffusers_round_trip() -> torch.Tensor:
        return reference.decode(reference.encode(pixel_values).latent_dist.mean).sample

    return Workload(
        description=f"VAE {args.channels} x{args.layers_per_block} encode+decode {tuple(pixel_values.shape[1:])}",
        contenders=[Contender("ours", ours, ours_round_trip), Contender("diffusers", reference, diffusers_round_trip)],
        forward_flops=counted_flops(ours_round_trip),
        modes=("forward",),
    )


def channel_list(text: str) -> list[int]:
    return [int(value) for value in text.split(",")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(batch_size=1)  # one 256x256 image, the benchmark's workload
    parser.add_argument(
        "--channels", type=channel_list, default=[128, 256, 512, 512], help="block_out_channels, comma-separated"
    )
    parser.add_argument("--layers-per-block", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256, help="image side")
    add_attention_argument(parser)


# --- tiled decoding: memory and seams ------------------------------------------------------------------

CHILD = """
import json, resource, sys, torch
from hubformers.scripts.benchmark_vae import new_model, diffusers_twin
settings = json.loads(sys.argv[1])
torch.manual_seed(0)
model = new_model(settings["channels"], settings["layers_per_block"], 2 ** (len(settings["channels"]) - 1) * 16)
latents = torch.randn(1, 4, settings["latent_size"], settings["latent_size"], generator=torch.Generator().manual_seed(1))
tiling = dict(tiled=True, tile_size=settings["tile_size"]) if settings["tiled"] else {}

def peak_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))

with torch.no_grad():
    model.decode(latents[..., :16, :16], **tiling)  # warm up allocator and kernels on a small latent
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set to the current one
    before = peak_kib()
    image = model.decode(latents, **tiling).sample
    print(json.dumps({"peak_mib": (peak_kib() - before) / 1024}))
"""


def decode_peak_mib(settings: dict, tiled: bool) -> float:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({**settings, "tiled": tiled})],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def tiling_differences(settings: dict) -> dict[str, float]:
    """Max |tiled - untiled| of ours and of diffusers (its default tiling: tiles of `sample_size` pixels, a
    quarter overlapping and blended) on one random latent, and the range of the untiled image."""
    torch.manual_seed(0)
    factor = 2 ** (len(settings["channels"]) - 1)
    # diffusers' tiles are `sample_size` (= image_size) pixels: the same as ours
    model = new_model(settings["channels"], settings["layers_per_block"], factor * settings["tile_size"])
    reference = diffusers_twin(model)
    latents = torch.randn(
        1, 4, settings["latent_size"], settings["latent_size"], generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        untiled = model.decode(latents).sample
        ours = model.decode(latents, tiled=True, tile_size=settings["tile_size"]).sample
        reference.enable_tiling()
        theirs = reference.decode(latents).sample
    return {
        "untiled_range": (untiled.max() - untiled.min()).item(),
        "ours_tiled_vs_untiled": (ours - untiled).abs().max().item(),
        "diffusers_tiled_vs_untiled": (theirs - untiled).abs().max().item(),
    }


def main_tiling(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m hubformers.scripts.benchmark_vae tiling", description=__doc__)
    parser.add_argument("--channels", type=channel_list, default=[128, 256, 512, 512])
    parser.add_argument("--layers-per-block", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=1024, help="decoded side in pixels")
    parser.add_argument(
        "--tile-size", type=int, default=16, help="tile side in latent pixels (diffusers: 8x in pixels)"
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-differences", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    settings = dict(
        channels=args.channels,
        layers_per_block=args.layers_per_block,
        latent_size=args.image_size // 8,
        tile_size=args.tile_size,
    )
    report = {"settings": settings}
    if not args.skip_memory:
        untiled, tiled = decode_peak_mib(settings, tiled=False), decode_peak_mib(settings, tiled=True)
        report["peak_mib"] = {"untiled": untiled, "tiled": tiled, "tiled_over_untiled": tiled / untiled}
    if not args.skip_differences:
        report["max_abs_differences"] = tiling_differences(settings)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    if sys.argv[1:2] != ["tiling"]:
        sys.exit("usage: python -m hubformers.scripts.benchmark_vae tiling [options]; `hubformers benchmark vae` times")
    main_tiling(sys.argv[2:])
