"""Text to image with nothing but a VAE and CLIP: optimise the VAE latent so that CLIP scores the decoded image
as close to the prompt as possible, with the VAE prior keeping the latent plausible.

The objective, for each of several random restarts z_r ~ N(0, I):

    minimise  -cos(CLIP_image(bridge(decode(z_r))), CLIP_text(prompt))  +  prior_weight * (-log p(z_r)) / dim(z)

where -log p(z) = |z|^2 / 2 + const is the VAE's standard normal prior (Kingma & Welling, arXiv 1312.6114,
Section 3) and `bridge` maps the VAE's pixel range, channels and size to CLIP's preprocessing (Radford et al.,
2021, Section 2) differentiably. The decoder only makes images like its training data, CLIP steers among them;
the restarts with the highest final similarity are kept.
"""

from dataclasses import dataclass

import PIL.Image
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .image_processing_vae import VAEImageProcessorPil

# ITU-R BT.601 luma: three channels to one, as PIL's convert("L") does.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass
class GeneratedImages:
    """The kept restarts, best first: PIL images, their CLIP cosine similarity to the prompt, their latents."""

    images: list[PIL.Image.Image]
    similarities: torch.Tensor
    latents: torch.Tensor


class PixelBridge(torch.nn.Module):
    """VAE pixels -> CLIP `pixel_values`, differentiably: to [0, 1], channels mapped (one to three by repetition,
    three to one by luma), shorter side resized and centre-cropped to CLIP's input, normalised with its mean/std."""

    def __init__(self, pixel_range: tuple[float, float], vae_channels: int, clip_channels: int, image_processor):
        super().__init__()
        if vae_channels != clip_channels and (vae_channels, clip_channels) not in ((1, 3), (3, 1)):
            raise ValueError(
                f"Cannot map the VAE's {vae_channels}-channel images to CLIP's {clip_channels} channels: expected "
                "equal counts, or 1 and 3 (grayscale repeated, or RGB to luma)."
            )
        self.pixel_range, self.vae_channels, self.clip_channels = pixel_range, vae_channels, clip_channels
        crop = image_processor.crop_size if image_processor.do_center_crop else image_processor.size
        self.output_size = (crop["height"], crop["width"])
        mean = image_processor.image_mean if image_processor.do_normalize else [0.0] * clip_channels
        std = image_processor.image_std if image_processor.do_normalize else [1.0] * clip_channels
        self.register_buffer("mean", torch.tensor(mean[:clip_channels]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std[:clip_channels]).view(1, -1, 1, 1), persistent=False)

    def map_channels(self, images: torch.Tensor) -> torch.Tensor:
        if self.vae_channels == self.clip_channels:
            return images
        if self.vae_channels == 1:
            return images.expand(-1, self.clip_channels, -1, -1)
        weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
        return (images * weights).sum(1, keepdim=True)

    def resize_and_crop(self, images: torch.Tensor) -> torch.Tensor:
        """Shorter side to the crop's larger side, then the centre crop: CLIP's resize + centre-crop."""
        height, width = images.shape[-2:]
        scale = max(self.output_size) / min(height, width)
        resized_size = (max(round(height * scale), self.output_size[0]), max(round(width * scale), self.output_size[1]))
        images = F.interpolate(images, size=resized_size, mode="bicubic", align_corners=False, antialias=True)
        top = (resized_size[0] - self.output_size[0]) // 2
        left = (resized_size[1] - self.output_size[1]) // 2
        return images[..., top : top + self.output_size[0], left : left + self.output_size[1]]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        low, high = self.pixel_range
        unit = ((images - low) / (high - low)).clamp(0, 1)
        resized = self.resize_and_crop(self.map_channels(unit)).clamp(0, 1)  # bicubic overshoots, PIL clips
        return (resized - self.mean) / self.std


def postprocessor(vae) -> VAEImageProcessorPil:
    """What turns the VAE's pixels back into PIL images."""
    return VAEImageProcessorPil.for_config(vae.config)


def check_generation_arguments(prompt: str, steps: int, num_restarts: int, num_images: int) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"`prompt` must be a non-empty string, got {prompt!r}.")
    for name, value in (("steps", steps), ("num_restarts", num_restarts), ("num_images", num_images)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if num_images > num_restarts:
        raise ValueError(f"`num_images` ({num_images}) cannot exceed `num_restarts` ({num_restarts}).")


def text_embedding(clip, tokenizer, prompt: str) -> torch.Tensor:
    """The prompt's unit-norm CLIP text embedding, shape (1, projection_dim)."""
    tokens = tokenizer([prompt], return_tensors="pt", truncation=True).to(clip.device)
    with torch.no_grad():
        features = clip.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
    return F.normalize(features.pooler_output, dim=-1)


def similarities(clip, vae, bridge: PixelBridge, latents: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """cos(CLIP image embedding of decode(z), text embedding) per latent: shape (restarts,)."""
    pixel_values = bridge(vae.decode(latents).sample)
    image = F.normalize(clip.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
    return image @ text.squeeze(0)


def generate_image(
    prompt: str,
    clip,
    vae,
    processor,
    *,
    num_restarts: int = 8,
    num_images: int = 1,
    steps: int = 100,
    learning_rate: float = 0.1,
    prior_weight: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> GeneratedImages:
    """Images for `prompt` from a hubformers `VAEModel` guided by a hubformers `CLIPModel` and its processor (the
    tokenizer and the image processor whose preprocessing the pixels are bridged to). `num_restarts` latents are
    optimised for `steps` Adam steps; the `num_images` with the highest final similarity come back, best first.
    The same `seed` gives the same images."""
    check_generation_arguments(prompt, steps, num_restarts, num_images)
    bridge = PixelBridge(
        vae.config.pixel_range,
        vae.config.num_channels,
        clip.config.vision_config.num_channels,
        processor.image_processor,
    ).to(clip.device)
    text = text_embedding(clip, processor.tokenizer, prompt)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((num_restarts, *vae.latent_shape()), generator=generator).to(vae.device)
    latents.requires_grad_(True)
    optimizer = torch.optim.Adam([latents], lr=learning_rate)
    frozen = [parameter for model in (clip, vae) for parameter in model.parameters() if parameter.requires_grad]
    training = clip.training, vae.training
    clip.eval(), vae.eval()
    for parameter in frozen:  # gradients flow to the latents only
        parameter.requires_grad_(False)
    try:
        for _ in tqdm(range(steps), desc=f"generating {prompt!r}", disable=not progress):
            optimizer.zero_grad(set_to_none=True)
            negative_log_prior = 0.5 * latents.square().flatten(1).mean(1)  # per latent dimension, constants dropped
            loss = (prior_weight * negative_log_prior - similarities(clip, vae, bridge, latents, text)).sum()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            final = similarities(clip, vae, bridge, latents, text)
            best = final.argsort(descending=True)[:num_images]
            images = vae.decode(latents[best]).sample
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
        clip.train(training[0]), vae.train(training[1])
    return GeneratedImages(
        images=postprocessor(vae).postprocess(images), similarities=final[best], latents=latents[best].detach()
    )
