"""hubformers: ViT, Swin, CLIP, a VAE and Longformer as Hugging Face Transformers models.

Importing the package registers every config, model and processor with transformers' Auto classes, and
marks them for `save_pretrained` to copy their module files and write `auto_map`, so a saved folder also
loads with `trust_remote_code=True` where hubformers is not installed.
"""

import importlib

import transformers

from .attention_maps import AttentionMaps, attention_maps, attention_rollout
from .configuration_vit import AUTO_MAP as VIT_AUTO_MAP
from .configuration_vit import ViTConfig
from .image_processing_vit import ViTImageProcessor, ViTImageProcessorPil
from .modeling_vit import ViTForImageClassification, ViTForMaskedImageModeling, ViTModel, ViTPreTrainedModel

__version__ = "0.1.0"


def _register(auto_map: dict[str, str], image_processors: dict[str, type] | None = None) -> None:
    """Register the classes an architecture's `auto_map` names ("module.Class") with those Auto classes."""
    classes = {
        auto_name: getattr(importlib.import_module(f".{ref.split('.')[0]}", __name__), ref.split(".")[1])
        for auto_name, ref in auto_map.items()
    }
    config_class = classes.pop("AutoConfig")
    transformers.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    config_class.register_for_auto_class()
    for auto_name, model_class in classes.items():
        getattr(transformers, auto_name).register(config_class, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_name)
    if image_processors:
        transformers.AutoImageProcessor.register(config_class, image_processor_classes=image_processors, exist_ok=True)
        for processor_class in image_processors.values():
            processor_class.register_for_auto_class("AutoImageProcessor")


_register(VIT_AUTO_MAP, {"torchvision": ViTImageProcessor, "pil": ViTImageProcessorPil})

__all__ = [
    "AttentionMaps",
    "attention_maps",
    "attention_rollout",
    "ViTConfig",
    "ViTForImageClassification",
    "ViTForMaskedImageModeling",
    "ViTImageProcessor",
    "ViTImageProcessorPil",
    "ViTModel",
    "ViTPreTrainedModel",
]
