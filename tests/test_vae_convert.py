"""`hubformers convert diffusers`: a random tiny AutoencoderKL folder converts to a folder with the same latents and
reconstructions (fp32 <= 1e-4), old attention key names included, and variants our VAE cannot express are refused."""

import argparse
import json

import pytest
import torch
from conftest import max_abs_diff
from diffusers import AutoencoderKL
from transformers import AutoImageProcessor, AutoModel

import hubformers
from hubformers.scripts import convert
from hubformers.scripts.convert_diffusers import renamed_state, vae_config

TINY_DIFFUSERS = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 3,
    up_block_types=["UpDecoderBlock2D"] * 3,
    block_out_channels=[8, 16, 16],
    layers_per_block=1,
    norm_num_groups=4,
    latent_channels=4,
    sample_size=32,
    scaling_factor=0.13025,
)


def run_cli(*argv) -> None:
    parser = argparse.ArgumentParser(prog="hubformers convert")
    convert.add_arguments(parser)
    convert.main(parser.parse_args([str(arg) for arg in argv]))


def test_converts_an_autoencoder_kl_folder(tmp_path, capsys):
    reference = AutoencoderKL(**TINY_DIFFUSERS, shift_factor=0.1).eval()
    reference.save_pretrained(tmp_path / "pipeline" / "vae")
    run_cli("diffusers", tmp_path / "pipeline", "--output-dir", tmp_path / "ours")
    assert "max abs difference to diffusers" in capsys.readouterr().out

    ours = AutoModel.from_pretrained(tmp_path / "ours").eval()
    assert isinstance(ours, hubformers.VAEModel)
    assert ours.config.scaling_factor == 0.13025 and ours.config.shift_factor == 0.1
    processor = AutoImageProcessor.from_pretrained(tmp_path / "ours")
    assert processor.size == {"height": 32, "width": 32} and processor.do_normalize
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = reference.encode(x).latent_dist.mean
        latents = ours.encode(x).latents
        assert max_abs_diff(expected, latents) <= 1e-4
        assert max_abs_diff(reference.decode(expected).sample, ours.decode(latents).sample) <= 1e-4
        # what a pipeline does with the scale and shift, done by our API
        scaled = (expected - 0.1) * 0.13025
        assert max_abs_diff(ours.encode(x, scaled=True).latents, scaled) <= 1e-5
        assert (
            max_abs_diff(ours.decode(scaled, scaled=True).sample, reference.decode(scaled / 0.13025 + 0.1).sample)
            <= 1e-4
        )


def test_pipeline_fields_are_copied():
    """What diffusers' pipelines read from the VAE's config comes across: SDXL's force_upcast and latent statistics."""
    fields = {"force_upcast": True, "latents_mean": [0.1, -0.2, 0.3, 0.0], "latents_std": [1.0, 0.5, 2.0, 1.5]}
    config = vae_config({**TINY_DIFFUSERS, **fields})
    assert {name: getattr(config, name) for name in fields} == fields
    assert vae_config(TINY_DIFFUSERS).force_upcast is False


def test_legacy_attention_names_are_renamed():
    state = AutoencoderKL(**TINY_DIFFUSERS).state_dict()
    legacy = {
        key.replace(".to_q.", ".query.")
        .replace(".to_k.", ".key.")
        .replace(".to_v.", ".value.")
        .replace(".to_out.0.", ".proj_attn."): value
        for key, value in state.items()
    }
    assert legacy.keys() != state.keys()
    renamed = renamed_state(legacy)
    assert renamed.keys() == state.keys()
    model = hubformers.VAEModel(vae_config(TINY_DIFFUSERS))
    model.load_state_dict(renamed, strict=True)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"]},
            "down_block_types",
        ),
        ({"out_channels": 1}, "out_channels"),
        ({"_class_name": "AsymmetricAutoencoderKL"}, "AutoencoderKL"),
    ],
)
def test_refuses_what_our_vae_cannot_express(overrides, message):
    with pytest.raises(ValueError, match=message):
        vae_config({**TINY_DIFFUSERS, **overrides})


def test_refuses_pickle_without_permission(tmp_path):
    reference = AutoencoderKL(**TINY_DIFFUSERS)
    reference.save_pretrained(tmp_path / "vae", safe_serialization=False)
    assert not (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").exists()
    assert json.loads((tmp_path / "vae" / "config.json").read_text())["_class_name"] == "AutoencoderKL"
    with pytest.raises(ValueError, match="allow-pickle"):
        run_cli("diffusers", tmp_path / "vae", "--output-dir", tmp_path / "ours")
    run_cli("diffusers", tmp_path / "vae", "--output-dir", tmp_path / "ours", "--allow-pickle")
    assert (tmp_path / "ours" / "model.safetensors").is_file()
