"""Text to image (`hubformers.generate_image`, `hubformers generate`, `hubformers evaluate-generation`): the
pixel bridge equals CLIP's own preprocessing, the optimisation raises the similarity and is reproducible, the
models come back untouched, bad input is refused; a slow test runs the whole demo on freshly trained models."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from conftest import max_abs_diff

import hubformers
from hubformers import cli
from hubformers.scripts.build_clip_tokenizer import build_clip_tokenizer
from hubformers.text_to_image import PixelBridge, similarities, text_embedding

TINY_CLIP = dict(
    text_config=dict(
        vocab_size=49408,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
        bos_token_id=49406,
        eos_token_id=49407,
    ),
    vision_config=dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8
    ),
    projection_dim=16,
)
# The paper's MLP VAE on 8x8 grayscale digits (Bernoulli: pixels in [0, 1]), and a conv VAE on RGB in [-1, 1].
TINY_MLP_VAE = dict(architecture="mlp", num_channels=1, image_size=8, hidden_size=32, latent_size=4)
TINY_CONV_VAE = dict(
    architecture="conv",
    num_channels=3,
    image_size=16,
    likelihood="gaussian",
    block_out_channels=[8, 16],
    layers_per_block=1,
    norm_num_groups=4,
    latent_channels=2,
)
QUICK = dict(num_restarts=3, steps=5, progress=False)


@pytest.fixture(scope="module")
def clip_parts():
    torch.manual_seed(0)
    clip = hubformers.CLIPModel(hubformers.CLIPConfig(**TINY_CLIP)).eval()
    tokenizer = build_clip_tokenizer(model_max_length=16)
    processor = hubformers.CLIPImageTextProcessor(hubformers.clip_image_processor(32), tokenizer)
    return clip, processor


def tiny_vae(**overrides) -> hubformers.VAEModel:
    """A random VAE whose images depend on z: a fresh one decodes every z to almost the same grey."""
    vae = hubformers.VAEModel(hubformers.VAEConfig(**{**TINY_MLP_VAE, **overrides})).eval()
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.normal_(0, 0.5)
    return vae


def smooth_levels(channels: int, size: int) -> torch.Tensor:
    """A smooth random 8-bit image, (1, channels, size, size). PIL resizes in two passes and rounds to 8 bits in
    between, which clips the overshoot of the bicubic kernel at sharp edges; on smooth images it does not."""
    coarse = torch.rand(1, channels, 3, 3, generator=torch.Generator().manual_seed(0))
    return (F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True) * 215 + 20).round()


@pytest.mark.parametrize("vae_settings", [TINY_MLP_VAE, TINY_CONV_VAE], ids=["gray-8x8-[0,1]", "rgb-16x16-[-1,1]"])
def test_bridge_equals_clip_preprocessing_of_the_same_image(clip_parts, vae_settings):
    """The oracle: CLIP's image processor on the PIL image that the VAE's pixels stand for."""
    _, processor = clip_parts
    config = hubformers.VAEConfig(**vae_settings)
    low, high = config.pixel_range
    levels = smooth_levels(config.num_channels, config.image_size)
    vae_pixels = low + (high - low) * levels / 255
    array = levels[0].permute(1, 2, 0).squeeze(-1).to(torch.uint8).numpy()
    expected = processor.image_processor(PIL.Image.fromarray(array), return_tensors="pt").pixel_values
    bridge = PixelBridge(config.pixel_range, config.num_channels, 3, processor.image_processor)
    got = bridge(vae_pixels)
    assert got.shape == expected.shape
    assert max_abs_diff(got, expected) <= 1.5 / 255 / min(processor.image_processor.image_std)  # 8-bit rounding


def test_rgb_to_gray_bridge_uses_luma():
    processor = hubformers.clip_image_processor(8, image_mean=[0.0], image_std=[1.0])
    bridge = PixelBridge((0.0, 1.0), 3, 1, processor)
    rgb = torch.rand(2, 3, 8, 8)
    expected = np.array(
        PIL.Image.fromarray((rgb[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()).convert("L")
    )
    assert max_abs_diff(bridge(rgb)[0, 0] * 255, torch.from_numpy(expected).float()) <= 1.0


def test_optimisation_beats_random_latents_and_is_reproducible(clip_parts):
    clip, processor = clip_parts
    vae = tiny_vae()
    before = {name: p.clone() for name, p in [*clip.named_parameters(), *vae.named_parameters()]}
    prompt = "a photo of the digit three"
    settings = dict(num_restarts=3, num_images=2, steps=40, learning_rate=0.3, prior_weight=0.0, progress=False)
    first = hubformers.generate_image(prompt, clip, vae, processor, **settings)
    again = hubformers.generate_image(prompt, clip, vae, processor, **settings)
    other_seed = hubformers.generate_image(prompt, clip, vae, processor, **{**settings, "seed": 1})

    bridge = PixelBridge(vae.config.pixel_range, 1, 3, processor.image_processor)
    with torch.no_grad():
        random_latents = torch.randn(200, *vae.latent_shape(), generator=torch.Generator().manual_seed(1))
        sampled = similarities(clip, vae, bridge, random_latents, text_embedding(clip, processor.tokenizer, prompt))
    assert first.similarities[0] > sampled.max()  # better than the best of 200 draws from the prior
    assert first.similarities[0] >= first.similarities[1]  # best first
    assert torch.equal(first.latents, again.latents) and torch.equal(first.similarities, again.similarities)
    assert not torch.equal(first.latents, other_seed.latents)
    assert len(first.images) == 2 and first.images[0].size == (8, 8) and first.images[0].mode == "L"
    # the models are as they were: no weight moved, every parameter still trainable
    for name, p in [*clip.named_parameters(), *vae.named_parameters()]:
        assert torch.equal(p, before[name]) and p.requires_grad, name


def test_prior_weight_pulls_latents_to_the_prior(clip_parts):
    clip, processor = clip_parts
    vae = tiny_vae()
    norms = [
        hubformers.generate_image(
            "a dog", clip, vae, processor, prior_weight=w, learning_rate=0.3, **{**QUICK, "steps": 30}
        ).latents.norm()
        for w in (0.0, 100.0)
    ]
    assert norms[1] < 0.5 * norms[0]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(prompt=""), "non-empty"),
        (dict(prompt="   "), "non-empty"),
        (dict(steps=0), "`steps` must be a positive integer"),
        (dict(num_restarts=-1), "`num_restarts` must be a positive integer"),
        (dict(num_restarts=2, num_images=3), "cannot exceed"),
    ],
)
def test_bad_arguments_are_refused(clip_parts, arguments, message):
    clip, processor = clip_parts
    arguments = {"prompt": "a cat", "num_restarts": 2, "steps": 2, "progress": False, **arguments}
    with pytest.raises(ValueError, match=message):
        hubformers.generate_image(arguments.pop("prompt"), clip, tiny_vae(), processor, **arguments)


def test_channels_that_cannot_be_mapped_are_refused(clip_parts):
    clip, processor = clip_parts
    two_channel_vae = tiny_vae(num_channels=2)
    with pytest.raises(ValueError, match="Cannot map the VAE's 2-channel images to CLIP's 3 channels"):
        hubformers.generate_image("a cat", clip, two_channel_vae, processor, **QUICK)


def test_generate_command_writes_the_png(clip_parts, tmp_path, capsys):
    clip, processor = clip_parts
    clip.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    tiny_vae().save_pretrained(tmp_path / "vae")
    out = tmp_path / "three.png"
    cli.main(["generate", "a photo of the digit three", "--clip", str(tmp_path / "clip"), "--vae",
              str(tmp_path / "vae"), "--out", str(out), "--steps", "3", "--restarts", "2", "--num-images", "2",
              "--scale", "4"])  # fmt: skip
    picture = PIL.Image.open(out)
    assert picture.size == (2 * 8 * 4 + 4, 8 * 4)
    assert "CLIP similarity" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_end_to_end_on_trained_models(tmp_path):
    """A smaller version of the README's demo (`make text-to-image`): train the three models on digits with its
    `hubformers train` commands, then draw three digits with two seeds each and let the ViT judge."""
    folders = {arch: tmp_path / arch for arch in ("vae", "clip", "vit")}
    cli.main(["train", "vae", "--dataset", "digits", "--latent-size", "8", "--epochs", "300", "--output-dir",
              str(folders["vae"])])  # fmt: skip
    cli.main(["train", "clip", "--output-dir", str(folders["clip"])])
    cli.main(["train", "vit", "--output-dir", str(folders["vit"])])
    out = tmp_path / "grid.png"
    cli.main(["evaluate-generation", "--clip", str(folders["clip"]), "--vae", str(folders["vae"]), "--classifier",
              str(folders["vit"]), "--digits", "0", "1", "7", "--seeds", "2", "--out", str(out)])  # fmt: skip
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["images"] == 6 and PIL.Image.open(out).size[0] > PIL.Image.open(out).size[1]
    assert figures["accuracy"] >= 4 / 6  # chance is 1/10
