"""ViT image processors: resize to the model's size, rescale to [0, 1], normalise with mean/std.

Both of transformers' image-processing backends are given (torchvision tensors, and PIL/numpy when
torchvision is missing); the declarations are all there is, the backends do the work.
"""

from transformers.image_processing_backends import PilBackend, TorchvisionBackend
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling


class ViTImageProcessor(TorchvisionBackend):
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True


class ViTImageProcessorPil(PilBackend):
    model_input_names = ViTImageProcessor.model_input_names
    resample = ViTImageProcessor.resample
    image_mean = ViTImageProcessor.image_mean
    image_std = ViTImageProcessor.image_std
    size = ViTImageProcessor.size
    do_resize = True
    do_rescale = True
    do_normalize = True


__all__ = ["ViTImageProcessor", "ViTImageProcessorPil"]
