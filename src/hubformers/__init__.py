"""hubformers: ViT, Swin, CLIP, a VAE and Longformer as Hugging Face Transformers models.

Importing the package registers every config, model and processor with transformers' Auto classes, and
marks them for `save_pretrained` to copy their module files and write `auto_map`, so a saved folder also
loads with `trust_remote_code=True` where hubformers is not installed. It also plugs the CPU fast paths into the
models' one seam (fast_paths.py; `HUBFORMERS_FAST_PATHS=0` leaves the models plain PyTorch).
"""

import importlib

import transformers

from . import fast_paths
from .attention_maps import AttentionMaps, attention_maps, attention_rollout
from .configuration_clip import AUTO_MAP as CLIP_AUTO_MAP
from .configuration_clip import TEXT_AUTO_MAP as CLIP_TEXT_AUTO_MAP
from .configuration_clip import VISION_AUTO_MAP as CLIP_VISION_AUTO_MAP
from .configuration_clip import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from .configuration_longformer import AUTO_MAP as LONGFORMER_AUTO_MAP
from .configuration_longformer import LongformerConfig
from .configuration_swin import AUTO_MAP as SWIN_AUTO_MAP
from .configuration_swin import SwinConfig
from .configuration_vae import AUTO_MAP as VAE_AUTO_MAP
from .configuration_vae import VAEConfig
from .configuration_vit import AUTO_MAP as VIT_AUTO_MAP
from .configuration_vit import ViTConfig
from .image_processing_vae import VAEImageProcessor, VAEImageProcessorPil
from .image_processing_vit import ViTImageProcessor, ViTImageProcessorPil
from .modeling_clip import (
    CLIPModel,
    CLIPPreTrainedModel,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
)
from .modeling_longformer import (
    LongformerForMaskedLM,
    LongformerForMultipleChoice,
    LongformerForQuestionAnswering,
    LongformerForSequenceClassification,
    LongformerForTokenClassification,
    LongformerModel,
    LongformerPreTrainedModel,
)
from .modeling_swin import (
    SwinBackbone,
    SwinForImageClassification,
    SwinForMaskedImageModeling,
    SwinModel,
    SwinPreTrainedModel,
)
from .modeling_vae import VAEModel, VAEPreTrainedModel
from .modeling_vit import ViTForImageClassification, ViTForMaskedImageModeling, ViTModel, ViTPreTrainedModel
from .processing_clip import CLIPCollator, CLIPImageTextProcessor, clip_image_processor, preprocess_pairs
from .text_to_image import GeneratedImages, generate_image

__version__ = "0.1.0"

fast_paths.install_unless_switched_off()


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
        # No video processor: said explicitly, because transformers otherwise derives a remote one from the
        # image processor's `auto_map` and asks whether to run it before every pipeline.
        transformers.AutoVideoProcessor.register(config_class, video_processor_classes={}, exist_ok=True)
        for processor_class in image_processors.values():
            if processor_class.__module__.startswith(__name__):  # transformers' own classes stay as they are
                processor_class.register_for_auto_class("AutoImageProcessor")


_register(VIT_AUTO_MAP, {"torchvision": ViTImageProcessor, "pil": ViTImageProcessorPil})
# transformers' Swin checkpoints use its ViTImageProcessor too (ImageNet mean/std, 224x224).
_register(SWIN_AUTO_MAP, {"torchvision": ViTImageProcessor, "pil": ViTImageProcessorPil})
for clip_auto_map in (CLIP_AUTO_MAP, CLIP_TEXT_AUTO_MAP, CLIP_VISION_AUTO_MAP):
    _register(clip_auto_map, {"torchvision": ViTImageProcessor, "pil": ViTImageProcessorPil})
# CLIP reads OpenAI's BPE through transformers' own tokenizer, and pairs it with our image processor.
transformers.AutoTokenizer.register(CLIPConfig, tokenizer_class=transformers.CLIPTokenizer, exist_ok=True)
transformers.AutoProcessor.register(CLIPConfig, CLIPImageTextProcessor, exist_ok=True)
CLIPImageTextProcessor.register_for_auto_class()
_register(LONGFORMER_AUTO_MAP)
# Longformer reads RoBERTa's byte-level BPE: transformers' own tokenizer serves our model type too.
transformers.AutoTokenizer.register(LongformerConfig, tokenizer_class=transformers.RobertaTokenizer, exist_ok=True)
_register(VAE_AUTO_MAP, {"torchvision": VAEImageProcessor, "pil": VAEImageProcessorPil})

__all__ = [
    "AttentionMaps",
    "CLIPCollator",
    "CLIPConfig",
    "CLIPImageTextProcessor",
    "CLIPModel",
    "CLIPPreTrainedModel",
    "CLIPTextConfig",
    "CLIPTextModel",
    "CLIPTextModelWithProjection",
    "CLIPVisionConfig",
    "CLIPVisionModel",
    "CLIPVisionModelWithProjection",
    "GeneratedImages",
    "LongformerConfig",
    "LongformerForMaskedLM",
    "LongformerForMultipleChoice",
    "LongformerForQuestionAnswering",
    "LongformerForSequenceClassification",
    "LongformerForTokenClassification",
    "LongformerModel",
    "LongformerPreTrainedModel",
    "SwinBackbone",
    "SwinConfig",
    "SwinForImageClassification",
    "SwinForMaskedImageModeling",
    "SwinModel",
    "SwinPreTrainedModel",
    "VAEConfig",
    "VAEImageProcessor",
    "VAEImageProcessorPil",
    "VAEModel",
    "VAEPreTrainedModel",
    "ViTConfig",
    "ViTForImageClassification",
    "ViTForMaskedImageModeling",
    "ViTImageProcessor",
    "ViTImageProcessorPil",
    "ViTModel",
    "ViTPreTrainedModel",
    "attention_maps",
    "attention_rollout",
    "clip_image_processor",
    "generate_image",
    "preprocess_pairs",
]
