"""ViT image processors: resize to the model's size, rescale to [0, 1], normalise with mean/std.

These are transformers' own `ViTImageProcessor` (torchvision tensors) and `ViTImageProcessorPil` (PIL/numpy,
when torchvision is missing): our ViT, Swin and CLIP preprocess exactly as transformers' checkpoints do. Using
transformers' classes rather than copies of them keeps `image_processor_type: ViTImageProcessor` meaning one
class: transformers' own folders load transformers' processor with hubformers imported, and a saved
`preprocessor_config.json` needs no remote code.
"""

from transformers import ViTImageProcessor, ViTImageProcessorPil

__all__ = ["ViTImageProcessor", "ViTImageProcessorPil"]
