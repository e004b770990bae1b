"""timm models as hubformers models: what every timm converter shares.

Loading a timm model without the network (from its registry name with random weights, a local checkpoint or a
`save_for_hf` folder), naming its activations as transformers does, its ImageNet labels, its evaluation
preprocessing as our image processor, and `timm_converter`: the refuse-check-build-verify-save sequence that
`convert_timm_vit` and `convert_timm_swin` run with their own config and parameter names.
"""

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.image_utils import PILImageResampling

from hubformers import ViTImageProcessor
from hubformers.configuration_utils import to_pair
from hubformers.scripts.checkpoints import folder_weights, read_checkpoint
from hubformers.scripts.conversion import build_with_weights, check_float32_on_cpu, verify_and_save

# Activations our configs can name, most common first; see `activation_name`.
ACTIVATION_CANDIDATES = ("gelu", "gelu_pytorch_tanh", "quick_gelu", "relu", "silu")


def import_timm():
    try:
        import timm
    except ImportError as error:
        raise ImportError("Converting timm models needs timm: `pip install timm`.") from error
    return timm


def load_timm_model(
    name_or_folder: str,
    checkpoint: str | Path | None = None,
    allow_pickle: bool = False,
    model_args: dict | None = None,
) -> nn.Module:
    """Build a timm model from its registry name or a `save_for_hf` folder (with `pretrained=False`: nothing
    is downloaded) and load local weights into it: `checkpoint` if given, else the folder's own."""
    timm = import_timm()
    folder = Path(name_or_folder)
    source = f"local-dir:{folder}" if folder.is_dir() else name_or_folder
    model = timm.create_model(source, pretrained=False, **(model_args or {}))
    if checkpoint is None and folder.is_dir():
        checkpoint = folder_weights(folder)
    if checkpoint is not None:
        model.load_state_dict(read_checkpoint(checkpoint, allow_pickle))
    return model


def activation_name(activation: nn.Module) -> str | None:
    """The transformers name of a timm activation, found by evaluating it: timm has several classes per
    function (nn.GELU, timm's GELU, get_act_layer strings), and what must match is the function."""
    probe = torch.linspace(-8, 8, 1001)
    with torch.no_grad():
        output = activation(probe)
        for name in ACTIVATION_CANDIDATES:
            if (ACT2FN[name](probe) - output).abs().max() <= 1e-6:
                return name
    return None


def int_or_pair(pair: tuple[int, int]) -> int | list[int]:
    return pair[0] if pair[0] == pair[1] else list(pair)


def label_fields(model: nn.Module) -> dict:
    """`id2label` with ImageNet's class names when timm says the head is an ImageNet head, else `num_labels`."""
    timm = import_timm()
    subset = timm.data.infer_imagenet_subset(model)
    if subset is None:
        return {"num_labels": model.num_classes}
    info = timm.data.ImageNetInfo(subset)
    return {"id2label": {index: info.index_to_description(index) for index in range(model.num_classes)}}


def image_processor_from_timm(model: nn.Module) -> ViTImageProcessor:
    """timm's evaluation preprocessing for this model: resize to size / crop_pct, center-crop to the
    model's input size, normalise with its mean/std (timm.data.transforms_imagenet_eval)."""
    timm = import_timm()
    data = timm.data.resolve_input_data_config(model)  # the model's own input size, not the cfg's default
    _, height, width = data["input_size"]
    crop_pct = data.get("crop_pct") or timm.data.DEFAULT_CROP_PCT
    crop_mode = data.get("crop_mode") or "center"
    scale_h, scale_w = math.floor(height / crop_pct), math.floor(width / crop_pct)
    if crop_mode == "squash":
        size = {"height": scale_h, "width": scale_w}
    elif crop_mode == "center" and scale_h == scale_w:
        size = {"shortest_edge": scale_h}
    else:
        raise ValueError(
            f"timm preprocessing crop_mode={crop_mode!r} at input size {(height, width)} has no equivalent in "
            "our image processor (it supports 'squash', and 'center' for square inputs)."
        )
    try:
        resample = PILImageResampling[data["interpolation"].upper()]
    except KeyError:
        raise ValueError(f"timm interpolation {data['interpolation']!r} has no PIL equivalent.") from None
    return ViTImageProcessor(
        size=size,
        crop_size={"height": height, "width": width},
        do_center_crop=True,
        resample=resample,
        image_mean=list(data["mean"]),
        image_std=list(data["std"]),
    )


def renamed_state(timm_state: dict[str, torch.Tensor], names_of: Callable[[str], list[str]]) -> dict[str, torch.Tensor]:
    """timm's parameters under our names; a parameter with several names (timm's fused qkv) is split evenly
    along its output dimension, in the order of the names."""
    ours = {}
    for timm_key, tensor in timm_state.items():
        names = names_of(timm_key)
        # copies: the model must own its weights, not views sharing timm's (or each other's) storage
        ours.update(zip(names, (part.clone() for part in tensor.chunk(len(names), dim=0))))
    return ours


def same_logits_check(timm_model: nn.Module) -> Callable[[nn.Module], float]:
    """A check for `verify_and_save`: one forward of timm's model and ours on the same random images; catches
    any difference the structural checks miss."""

    def check(ours: nn.Module) -> float:
        height, width = to_pair(ours.config.image_size)
        generator = torch.Generator().manual_seed(0)
        pixel_values = torch.randn(1, ours.config.num_channels, height, width, generator=generator)
        was_training = timm_model.training
        timm_model.eval()
        with torch.no_grad():
            expected, got = timm_model(pixel_values), ours(pixel_values).logits
        timm_model.train(was_training)
        difference = (expected - got).abs().max().item()
        if difference > 1e-4 * max(1.0, expected.abs().max().item()):
            raise RuntimeError(f"The converted model's logits differ from timm's by {difference:.3g}.")
        return difference

    return check


def timm_converter(
    model_class: type[nn.Module],
    refuse: Callable[[nn.Module], None],
    config_of: Callable[[nn.Module], object],
    names_of: Callable[[str], list[str]],
) -> Callable[..., nn.Module]:
    """A converter from timm to our `model_class`: `refuse` raises for what ours cannot express, `config_of`
    gives our config and `names_of` our names of a timm parameter."""

    def convert(
        model_or_name_or_folder: nn.Module | str | Path,
        output_dir: str | Path | None = None,
        *,
        checkpoint: str | Path | None = None,
        allow_pickle: bool = False,
        model_args: dict | None = None,
    ) -> nn.Module:
        if isinstance(model_or_name_or_folder, nn.Module):
            timm_model = model_or_name_or_folder
        else:
            timm_model = load_timm_model(model_or_name_or_folder, checkpoint, allow_pickle, model_args)
        refuse(timm_model)
        check_float32_on_cpu(timm_model)
        state = renamed_state(timm_model.state_dict(), names_of)
        ours = build_with_weights(model_class, config_of(timm_model), state)
        processors = [image_processor_from_timm(timm_model)] if output_dir is not None else []
        verify_and_save(ours, same_logits_check(timm_model), output_dir, *processors)
        return ours

    convert.__doc__ = f"""A timm model as our `{model_class.__name__}` (fp32, eval mode) with the same logits.

    `model_or_name_or_folder` is a timm model, a timm model name or a `save_for_hf` folder; the other keyword
    arguments are `load_timm_model`'s. With `output_dir`, the model and an image processor configured like
    timm's evaluation preprocessing are saved there."""
    return convert
