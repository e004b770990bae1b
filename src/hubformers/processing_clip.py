"""CLIP's processor: our ViT image processor with CLIP's preprocessing, plus transformers' CLIP tokenizer.

Images: resize the shorter side (bicubic), centre-crop, rescale, normalise with OpenAI's CLIP mean and std,
as in the paper's released code and transformers' `CLIPImageProcessor`. Text: CLIP's lower-cased byte-level
BPE, framed by <|startoftext|> ... <|endoftext|>, truncated to the tokenizer's `model_max_length` (the text
tower's position table) unless asked otherwise. `CLIPCollator` batches pairs for `Trainer`.
"""

import torch
from transformers import ProcessorMixin
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

from .image_processing_vit import ViTImageProcessor, ViTImageProcessorPil


def clip_image_processor(image_size: int = 224, backend: str = "torchvision", **overrides):
    """Our ViT image processor set up as CLIP's: shorter side to `image_size`, centre crop, CLIP mean/std."""
    processor_class = {"torchvision": ViTImageProcessor, "pil": ViTImageProcessorPil}[backend]
    settings = dict(
        size={"shortest_edge": image_size},
        default_to_square=False,
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        resample=PILImageResampling.BICUBIC,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        do_convert_rgb=True,
    )
    return processor_class(**{**settings, **overrides})


class CLIPImageTextProcessor(ProcessorMixin):
    """CLIP's processor: `processor(images=..., text=..., return_tensors="pt")` -> pixel_values, input_ids,
    attention_mask. Text is truncated to the tokenizer's `model_max_length` by default (`truncation=False` to opt
    out). Named apart from transformers' `CLIPProcessor`, which `AutoProcessor` would otherwise pick by name."""

    text_kwargs = {"truncation": True}

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)


class CLIPCollator:
    """Batches examples of `pixel_values` and `input_ids` (token lists of any lengths, as `CLIPImageTextProcessor` or
    `preprocess_pairs` give them) for `CLIPModel`: stacks the images, pads the texts to the longest and asks for
    the contrastive loss. With a `datasets.Dataset`, map it through `preprocess_pairs` first: `Trainer` (with the
    default `remove_unused_columns=True`) keeps only the columns named like `CLIPModel.forward`'s arguments::

        train = pairs.map(preprocess_pairs(processor), batched=True, remove_columns=pairs.column_names)
        Trainer(model=model, args=TrainingArguments("out"), train_dataset=train,
                data_collator=CLIPCollator(processor)).train()
    """

    def __init__(self, processor: CLIPImageTextProcessor):
        self.tokenizer = processor.tokenizer

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        texts = [{"input_ids": example["input_ids"]} for example in examples]
        batch = dict(self.tokenizer.pad(texts, return_tensors="pt"))
        batch["pixel_values"] = torch.stack([torch.as_tensor(example["pixel_values"]) for example in examples])
        batch["return_loss"] = True
        return batch


def preprocess_pairs(processor: CLIPImageTextProcessor, image_column: str = "image", text_column: str = "caption"):
    """A batched `datasets.Dataset.map` function: image and caption columns -> `pixel_values` and `input_ids`."""

    def preprocess(batch: dict[str, list]) -> dict[str, list]:
        images = processor.image_processor(batch[image_column], return_tensors="pt").pixel_values
        input_ids = processor.tokenizer(batch[text_column], truncation=True).input_ids
        return {"pixel_values": list(images), "input_ids": input_ids}

    return preprocess


__all__ = ["CLIPCollator", "CLIPImageTextProcessor", "clip_image_processor", "preprocess_pairs"]
