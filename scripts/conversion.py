"""What every converter does once it has our config and the renamed weights: build our model with them, check
it against the reference it came from, and save it with its processors.

The converters (`convert_timm_vit`, `convert_timm_swin`, `convert_open_clip`, `convert_diffusers`,
`convert_roberta`) differ only in how they read the source and what they compare; a folder is written only
after the comparison passed.
"""

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def check_float32_on_cpu(model: nn.Module) -> None:
    parameter = next(model.parameters())
    if parameter.dtype != torch.float32 or parameter.device.type != "cpu":
        raise ValueError(
            f"Convert a float32 model on the CPU (call .float().cpu() first), got {parameter.dtype} on "
            f"{parameter.device}."
        )


def build_with_weights(model_class: type[nn.Module], config, state: dict[str, torch.Tensor]) -> nn.Module:
    """Our model holding exactly `state`, in eval mode. Built on the meta device: no memory and no random
    initialisation is spent on parameters that the state replaces anyway (seconds for ViT-B)."""
    with torch.device("meta"):
        model = model_class(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def verify_and_save(model: nn.Module, check: Callable[[nn.Module], object], output_dir: str | Path | None, *processors):
    """`check(model)` (it raises when the model disagrees with its reference); then, with `output_dir`, the model
    and its processors saved there. Returns what `check` returned (e.g. the largest difference)."""
    result = check(model)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        for processor in processors:
            processor.save_pretrained(output_dir)
    return result
