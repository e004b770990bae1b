"""Our VAE and CLIP text tower inside diffusers' Stable Diffusion pipelines: with a tiny random UNet, a scheduler
and CLIP's tokenizer, `StableDiffusionPipeline` and `StableDiffusionImg2ImgPipeline` give the same images with
our `VAEModel` + `CLIPTextModel` as with diffusers' `AutoencoderKL` + transformers' `CLIPTextModel` on the same
weights (fp32, <= 1e-4); the switches and fields the pipelines read behave as diffusers' do."""

import numpy as np
import PIL.Image
import pytest
import torch
import transformers
from conftest import max_abs_diff
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from test_text_to_image import TINY_CLIP

import hubformers
from hubformers import modeling_vae
from hubformers.scripts.build_clip_tokenizer import build_clip_tokenizer

TEXT = TINY_CLIP["text_config"]
VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
    block_out_channels=[8, 16],
    layers_per_block=1,
    norm_num_groups=4,
    latent_channels=4,
    sample_size=16,
    scaling_factor=0.18215,
)
PROMPT = "a photo of an astronaut riding a horse"
CALL = dict(num_inference_steps=2, guidance_scale=2.0, height=16, width=16)


def ours_from(reference_vae: AutoencoderKL) -> hubformers.VAEModel:
    """Our VAE on diffusers' weights: its config mapped by the converter, its state dict loaded as it is."""
    from hubformers.scripts.convert_diffusers import vae_config

    config = vae_config(dict(reference_vae.config))
    config.tile_size = 4  # latents of 8x8 in four tiles when the pipeline enables tiling
    ours = hubformers.VAEModel(config).eval()
    ours.load_state_dict(reference_vae.state_dict(), strict=True)
    return ours


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    torch.manual_seed(0)
    reference_text = transformers.CLIPTextModel(transformers.CLIPTextConfig(**TEXT)).eval()
    folder = tmp_path_factory.mktemp("text")
    reference_text.save_pretrained(folder)
    text = hubformers.CLIPTextModel.from_pretrained(folder).eval()
    reference_vae = AutoencoderKL(**VAE).eval()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT["hidden_size"],
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()
    parts = dict(
        unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False),
        tokenizer=build_clip_tokenizer(model_max_length=TEXT["max_position_embeddings"]),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return parts, (reference_vae, reference_text), (ours_from(reference_vae), text)


def pipelines(components, cls=StableDiffusionPipeline):
    parts, (reference_vae, reference_text), (vae, text) = components
    reference = cls(vae=reference_vae, text_encoder=reference_text, **parts)
    ours = cls(vae=vae, text_encoder=text, **parts)
    for pipeline in (reference, ours):
        pipeline.set_progress_bar_config(disable=True)
    return reference, ours


def run(pipeline, **kwargs):
    return pipeline(PROMPT, generator=torch.Generator().manual_seed(0), **{**CALL, **kwargs}).images


@pytest.mark.parametrize("output_type", ["np", "pt"])
def test_text_to_image_gives_the_same_images(components, output_type):
    reference, ours = pipelines(components)
    expected, got = run(reference, output_type=output_type), run(ours, output_type=output_type)
    expected, got = (torch.as_tensor(np.asarray(images)) for images in (expected, got))
    assert got.shape == expected.shape == ((1, 16, 16, 3) if output_type == "np" else (1, 3, 16, 16))
    assert expected.std() > 0.01  # the images depend on the weights
    assert max_abs_diff(expected, got) <= 1e-4


def test_clip_skip_gives_the_same_images(components):
    """diffusers' `clip_skip` reads `text_encoder.text_model.final_layer_norm`, which transformers' own
    CLIPTextModel no longer has (5.x); ours offers it. The oracle: the reference pipeline given the prompt embeddings
    that clip_skip=1 means, transformers' final LayerNorm on its next-to-last layer's hidden states."""
    reference, ours = pipelines(components)
    tokenizer, reference_text = reference.tokenizer, reference.text_encoder
    ids = tokenizer(PROMPT, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        embeds = reference_text.final_layer_norm(reference_text(ids, output_hidden_states=True).hidden_states[-2])
    generator = torch.Generator().manual_seed(0)
    expected = reference(prompt_embeds=embeds, generator=generator, output_type="pt", **CALL).images
    got = run(ours, output_type="pt", clip_skip=1)
    assert max_abs_diff(expected, run(reference, output_type="pt")) > 1e-3  # skipping a layer changes the images
    assert max_abs_diff(expected, got) <= 1e-4


def test_pil_output_and_tiling_and_slicing_switches(components, monkeypatch):
    reference, ours = pipelines(components)
    tiles = []
    run_tiled = modeling_vae.run_tiled
    monkeypatch.setattr(modeling_vae, "run_tiled", lambda *args: tiles.append(args[1].shape) or run_tiled(*args))
    expected = run(reference, output_type="pil", num_images_per_prompt=2)
    assert all(isinstance(image, PIL.Image.Image) and image.size == (16, 16) for image in expected)
    for switch in ("enable_tiling", "enable_slicing"):  # untiled and tiled agree; slices give the whole batch
        getattr(ours.vae, switch)()
    try:
        assert ours.vae.use_tiling and ours.vae.use_slicing
        got = run(ours, output_type="pil", num_images_per_prompt=2)
    finally:
        ours.vae.disable_tiling(), ours.vae.disable_slicing()
    differences = [np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() for a, b in zip(expected, got)]
    assert len(got) == 2 and max(differences) <= 1  # 8-bit rounding of images that agree to 1e-4
    assert len(tiles) == 2 * len(ours.vae.decoder.up_blocks)  # each image alone, tile by tile


def test_image_to_image_encodes_through_our_vae(components):
    reference, ours = pipelines(components, StableDiffusionImg2ImgPipeline)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    expected = run(reference, image=image, strength=0.7, output_type="pt")
    got = run(ours, image=image, strength=0.7, output_type="pt")
    assert max_abs_diff(expected, got) <= 1e-4
