"""Input and config checks shared by every hubformers model.

Each check raises a `ValueError` that names what was expected and what came, so bad input
fails loudly at the boundary instead of turning into a silent wrong answer deeper down.
"""

import math

import torch
from transformers.activations import ACT2FN


def is_finite_number(value) -> bool:
    """An int or a float that is neither NaN nor infinite (a bool is no number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def require_positive(**values) -> None:
    """Every named value (a number or a non-empty sequence of numbers) must be finite and > 0."""
    for name, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items or not all(is_finite_number(v) and v > 0 for v in items):
            raise ValueError(f"`{name}` must be positive, got {value!r}.")


def require_non_negative(**values) -> None:
    for name, value in values.items():
        if not (is_finite_number(value) and value >= 0):
            raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")


def require_finite(**values) -> None:
    for name, value in values.items():
        if not is_finite_number(value):
            raise ValueError(f"`{name}` must be a finite number, got {value!r}.")


def require_size(**values) -> None:
    """Every named value is a positive int or a (height, width) pair of them."""
    for name, value in values.items():
        if isinstance(value, (list, tuple)) and len(value) != 2:
            raise ValueError(f"`{name}` must be an int or a (height, width) pair, got {len(value)} values {value!r}.")
        require_positive(**{name: value})


def require_divisible(numerator_name: str, numerator: int, denominator_name: str, denominator: int) -> None:
    if numerator % denominator != 0:
        raise ValueError(f"`{numerator_name}` ({numerator}) must be divisible by `{denominator_name}` ({denominator}).")


def require_probability(**values) -> None:
    for name, value in values.items():
        if not (is_finite_number(value) and 0.0 <= value < 1.0):
            raise ValueError(f"`{name}` must be in [0, 1), got {value!r}.")


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
    if pixel_values.ndim != 4:
        raise ValueError(
            f"`pixel_values` must have shape (batch, {num_channels}, height, width), got {tuple(pixel_values.shape)}."
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"`pixel_values` must be floating point (as the image processor returns), got {pixel_values.dtype}; "
            "integer pixels need rescaling and normalising first."
        )
    if pixel_values.shape[1] != num_channels:
        raise ValueError(
            f"`pixel_values` must have {num_channels} channels (config.num_channels), "
            f"got {pixel_values.shape[1]} in shape {tuple(pixel_values.shape)}."
        )


def check_classification_labels(labels: torch.Tensor, logits: torch.Tensor, config) -> None:
    """Validate `labels` against the problem type that transformers' loss would pick, and record that type."""
    batch_size, num_labels = logits.shape
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"

    if config.problem_type == "single_label_classification":
        if labels.is_floating_point() or labels.shape != (batch_size,):
            raise ValueError(
                f"single-label classification needs integer `labels` of shape ({batch_size},), "
                f"got {labels.dtype} of shape {tuple(labels.shape)}."
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
            raise ValueError(
                f"`labels` must lie in [0, {num_labels - 1}] (config.num_labels={num_labels}), "
                f"got values from {labels.min().item()} to {labels.max().item()}."
            )
    elif config.problem_type == "multi_label_classification":
        if labels.shape != (batch_size, num_labels):
            raise ValueError(
                f"multi-label classification needs `labels` of shape ({batch_size}, {num_labels}), "
                f"got {tuple(labels.shape)}."
            )
    elif labels.numel() != batch_size * num_labels:
        raise ValueError(
            f"regression needs `labels` with {batch_size} x {num_labels} values, got shape {tuple(labels.shape)}."
        )


def check_image_size(pixel_values: torch.Tensor, image_size: tuple[int, int]) -> None:
    """Images of the (height, width) the position embeddings were learned for."""
    if tuple(pixel_values.shape[-2:]) != tuple(image_size):
        raise ValueError(
            f"Input image size {tuple(pixel_values.shape[-2:])} (height, width) doesn't match the model's "
            f"{tuple(image_size)}; pass `interpolate_pos_encoding=True` to run at another resolution."
        )
