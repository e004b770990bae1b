"""VAE image processors: images to the model's pixel range, and the model's output back to PIL images.

The range follows the VAE's likelihood: [-1, 1] for the Gaussian (diffusers' convention: rescale to [0, 1],
normalise with mean 0.5 and std 0.5; the default) and [0, 1] for the Bernoulli (`do_normalize=False`);
`for_config` picks it from a `VAEConfig`. Grayscale images stay one channel. Both of transformers' backends
are given (torchvision tensors, and PIL/numpy when torchvision is missing).
"""

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_backends import PilBackend, TorchvisionBackend
from transformers.image_utils import PILImageResampling


class VAEImageProcessing:
    """What both backends share: the defaults, `for_config` and `postprocess`."""

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BICUBIC
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    size = {"height": 256, "width": 256}
    do_resize = True
    do_rescale = True
    do_normalize = True

    @classmethod
    def for_config(cls, config, **kwargs):
        """A processor giving the range and size a `VAEConfig`'s model takes."""
        channels = config.num_channels
        defaults = dict(
            size={"height": config.image_size, "width": config.image_size},
            do_normalize=config.likelihood == "gaussian",
            image_mean=[0.5] * channels,
            image_std=[0.5] * channels,
        )
        return cls(**{**defaults, **kwargs})

    def postprocess(self, pixel_values: torch.Tensor) -> list[PIL.Image.Image]:
        """(batch, channels, height, width) in the model's range -> PIL images ("L" for one channel, else "RGB")."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] not in (1, 3):
            raise ValueError(
                f"`pixel_values` must have shape (batch, 1 or 3, height, width), got {tuple(pixel_values.shape)}."
            )
        images = pixel_values.detach().float().cpu()
        if self.do_normalize:
            channels = images.shape[1]
            mean = torch.tensor(self.image_mean[:channels]).view(1, -1, 1, 1)
            std = torch.tensor(self.image_std[:channels]).view(1, -1, 1, 1)
            images = images * std + mean
        images = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [
            PIL.Image.fromarray(np.ascontiguousarray(image.squeeze(-1) if image.shape[-1] == 1 else image))
            for image in images
        ]


class VAEImageProcessor(VAEImageProcessing, TorchvisionBackend):
    pass


class VAEImageProcessorPil(VAEImageProcessing, PilBackend):
    pass


__all__ = ["VAEImageProcessor", "VAEImageProcessorPil"]
