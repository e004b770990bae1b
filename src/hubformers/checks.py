"""Input and config checks shared by every hubformers model, and the classification loss that checks its labels.

Each check raises a `ValueError` naming what was expected and what came: bad input fails at the boundary instead
of turning into a silent wrong answer deeper down.
"""

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import torch
from transformers import PreTrainedModel
from transformers.activations import ACT2FN


def is_finite_number(value) -> bool:
    """An int or a float that is neither NaN nor infinite (a bool is no number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def require(expected: str, holds: Callable[[float], bool], /, **values) -> None:
    """Every named value, a number or a non-empty sequence of numbers, is finite and `holds`."""
    for name, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items or not all(is_finite_number(item) and holds(item) for item in items):
            raise ValueError(f"`{name}` must be {expected}, got {value!r}.")


require_positive = partial(require, "positive", lambda value: value > 0)
require_non_negative = partial(require, "a finite number >= 0", lambda value: value >= 0)
require_finite = partial(require, "a finite number", lambda value: True)
require_probability = partial(require, "in [0, 1)", lambda value: 0 <= value < 1)


def require_size(**values) -> None:
    """Every named value is a positive int or a (height, width) pair of them."""
    for name, value in values.items():
        if isinstance(value, (list, tuple)) and len(value) != 2:
            raise ValueError(f"`{name}` must be an int or a (height, width) pair, got {len(value)} values {value!r}.")
        require_positive(**{name: value})


def require_divisible(numerator_name: str, numerator: int, denominator_name: str, denominator: int) -> None:
    if numerator % denominator != 0:
        raise ValueError(f"`{numerator_name}` ({numerator}) must be divisible by `{denominator_name}` ({denominator}).")


def require_token_id(vocab_size: int, **values) -> None:
    """Every named special token id is None or an id of the vocabulary."""
    for name, value in values.items():
        if value is not None and not (isinstance(value, int) and 0 <= value < vocab_size):
            raise ValueError(f"`{name}` must be in [0, {vocab_size}) (vocab_size) or None, got {value!r}.")


def require_activation(name: str, value: str) -> None:
    if value not in ACT2FN:
        raise ValueError(f"`{name}` must be one of transformers' activations {sorted(ACT2FN)}, got {value!r}.")


def check_pixel_values(pixel_values: torch.Tensor, num_channels: int) -> None:
    """A float batch of shape (batch, num_channels, height, width)."""
    shape = f"shape (batch, {num_channels}, height, width)"
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"`pixel_values` must be a tensor of {shape}, got {type(pixel_values).__name__}.")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != num_channels:
        raise ValueError(
            f"`pixel_values` must have {num_channels} channels (config.num_channels) in {shape}, "
            f"got {tuple(pixel_values.shape)}."
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"`pixel_values` must be floating point (as the image processor returns), got {pixel_values.dtype}; "
            "integer pixels need rescaling and normalising first."
        )


def check_patches(pixel_values: torch.Tensor, patch_size: tuple[int, int]) -> None:
    """At least one image, each at least one (height, width) patch large. The batch is not checked while a
    compiler traces (a program exported with a dynamic batch would guard on it)."""
    if not torch.compiler.is_compiling() and pixel_values.shape[0] == 0:
        raise ValueError(f"`pixel_values` must hold at least one image, got shape {tuple(pixel_values.shape)}.")
    (height, width), (patch_h, patch_w) = pixel_values.shape[-2:], patch_size
    if height < patch_h or width < patch_w:
        raise ValueError(
            f"An image must span at least one {patch_h}x{patch_w} patch (config.patch_size), got {height}x{width}."
        )


def check_token_mask(attention_mask: torch.Tensor | None, shape: torch.Size) -> None:
    """A padding mask of the tokens' (batch, tokens) shape."""
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(shape):
        raise ValueError(
            f"`attention_mask` must have shape (batch, tokens) = {tuple(shape)}, one value per token the encoder "
            f"sees (the class token included), got {tuple(attention_mask.shape)}."
        )


IGNORE_INDEX = -100  # the label that transformers' (and PyTorch's) cross-entropy leaves out of the loss


def problem_type_of(labels: torch.Tensor, num_labels: int, config) -> str:
    """`config.problem_type` when set, else what transformers infers: regression for one label, single-label
    classification for integer labels, multi-label otherwise."""
    if config.problem_type is not None:
        return config.problem_type
    if num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def check_classification_labels(labels: torch.Tensor, logits: torch.Tensor, config) -> str:
    """Validate `labels` for this call's problem type (`problem_type_of`) and return that type."""
    batch_size, num_labels = logits.shape
    problem_type = problem_type_of(labels, num_labels, config)
    if problem_type == "single_label_classification":
        if labels.is_floating_point() or labels.shape != (batch_size,):
            raise ValueError(
                f"single-label classification needs integer `labels` of shape ({batch_size},), "
                f"got {labels.dtype} of shape {tuple(labels.shape)}."
            )
        check_indices("labels", labels, num_labels, f"config.num_labels={num_labels}", IGNORE_INDEX)
    elif problem_type == "multi_label_classification":
        if labels.shape != (batch_size, num_labels):
            raise ValueError(
                f"multi-label classification needs `labels` of shape ({batch_size}, {num_labels}), "
                f"got {tuple(labels.shape)}."
            )
    elif labels.numel() != batch_size * num_labels:
        raise ValueError(
            f"regression needs `labels` with {batch_size} x {num_labels} values, got shape {tuple(labels.shape)}."
        )
    return problem_type


class Requirement(NamedTuple):
    """A check on values: `holds`, a 0-d bool tensor on their device; `message`, what was expected; `found`,
    what came instead (read only on the CPU, once the check has failed)."""

    holds: torch.Tensor
    message: str
    found: Callable[[], str]


def indices_requirement(name: str, values: torch.Tensor, size: int, field: str, ignore_index=None) -> Requirement:
    """Indices into `size` rows (of an embedding table, or classes), or `ignore_index`."""
    valid = (values >= 0) & (values < size)
    if ignore_index is not None:
        valid |= values == ignore_index
    ignored = "" if ignore_index is None else f" or be {ignore_index} (ignored)"
    return Requirement(
        valid.all(),
        f"`{name}` must lie in [0, {size - 1}] ({field}){ignored}",
        lambda: f"{values[~valid].unique()[:5].tolist()}",
    )


def check_requirements(*requirements: Requirement) -> None:
    """On the CPU, one read of all requirements and a ValueError for the first that fails. On other devices (where
    a read would wait) and while a compiler traces, device-side asserts instead; an exported program has none."""
    if not requirements or torch.compiler.is_exporting():
        return
    holds = torch.stack([requirement.holds for requirement in requirements])
    if torch.compiler.is_compiling() or holds.device.type != "cpu":
        for requirement in requirements:
            torch._assert_async(requirement.holds, requirement.message)
    elif not holds.all():
        failed = requirements[int((~holds).nonzero()[0])]
        raise ValueError(f"{failed.message}, got {failed.found()}.")


def check_indices(name: str, values: torch.Tensor | None, size: int, field: str, ignore_index: int | None = None):
    """Integer indices into `size` rows, or `ignore_index`, checked where an embedding or a loss would fail."""
    check_integers(name, values)
    if values is not None:
        check_requirements(indices_requirement(name, values, size, field, ignore_index))


def check_integers(name: str, values: torch.Tensor | None) -> None:
    if values is not None and (values.is_floating_point() or values.dtype == torch.bool):
        raise ValueError(f"`{name}` must hold integer indices, got {values.dtype}.")


def check_image_size(pixel_values: torch.Tensor, image_size: tuple[int, int]) -> None:
    """Images of the (height, width) the position embeddings were learned for."""
    if tuple(pixel_values.shape[-2:]) != tuple(image_size):
        raise ValueError(
            f"Input image size {tuple(pixel_values.shape[-2:])} (height, width) doesn't match the model's "
            f"{tuple(image_size)}; pass `interpolate_pos_encoding=True` to run at another resolution."
        )


class ProblemType(NamedTuple):
    """What transformers' classification loss reads of a config, for one call."""

    num_labels: int
    problem_type: str


def classification_loss(model: PreTrainedModel, labels: torch.Tensor, logits: torch.Tensor, **kwargs) -> torch.Tensor:
    """transformers' loss for this call's problem type (`problem_type_of`), handed over in a `ProblemType`: where
    transformers records an inferred type in the config (and then refuses labels of another kind), the config
    stays as the user left it. Single-label labels of -100 are left out."""
    problem_type = check_classification_labels(labels, logits, model.config)
    return model.loss_function(labels, logits, ProblemType(model.config.num_labels, problem_type), **kwargs)
