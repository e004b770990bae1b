"""Swin through the shared model tests (model_tester.py): SwinModel, both heads and the backbone against
transformers' Swin."""

import torch
import transformers
from model_tester import ModelTester
from test_swin import TINY_SWIN

import hubformers

STAGES = len(TINY_SWIN["depths"])


def image_size(model_class) -> tuple[int, int]:
    """Non-square, with the later stages' maps (10x8, 5x4) padded to whole windows of 4; square for masked image
    modelling, whose decoder in transformers takes square maps only."""
    return (32, 32) if model_class is hubformers.SwinForMaskedImageModeling else (40, 32)


def grid(model_class, stage: int) -> tuple[int, int]:
    """The patch grid of a stage (0: the embeddings'); merging halves it, rounding up."""
    height, width = (size // TINY_SWIN["patch_size"] for size in image_size(model_class))
    for _ in range(stage):
        height, width = -(-height // 2), -(-width // 2)
    return height, width


BACKBONE_FEATURES = ["stem", "stage1", "stage2", "stage3"]


class TestSwin(ModelTester):
    all_model_classes = (
        hubformers.SwinModel,
        hubformers.SwinForImageClassification,
        hubformers.SwinForMaskedImageModeling,
        hubformers.SwinBackbone,
    )
    reference_classes = {
        hubformers.SwinModel: transformers.SwinModel,
        hubformers.SwinForImageClassification: transformers.SwinForImageClassification,
        hubformers.SwinForMaskedImageModeling: transformers.SwinForMaskedImageModeling,
        hubformers.SwinBackbone: transformers.SwinBackbone,
    }
    common_properties = ("hidden_size", "num_attention_heads", "num_hidden_layers", "embed_dim", "depths")
    # transformers' SwinModelTester
    minimal_config_kwargs = {
        hubformers.SwinConfig: dict(
            image_size=32,
            patch_size=2,
            embed_dim=16,
            depths=[1, 2, 1],
            num_heads=[2, 2, 4],
            window_size=2,
            encoder_stride=8,
        )
    }
    xfail = {}
    skip = {}
    # transformers' SwinBackbone keeps the encoder's final LayerNorm (its checkpoints have it) but the feature
    # maps come from the per-stage norms
    unused_parameters = {"SwinBackbone": {"swin.layernorm.": "the feature maps take the per-stage LayerNorms"}}

    def config_kwargs(self, model_class):
        kwargs = dict(TINY_SWIN, drop_path_rate=0.0)
        if model_class is hubformers.SwinBackbone:
            kwargs["out_features"] = BACKBONE_FEATURES
        return kwargs

    def make_inputs(self, model_class, batch_size=None):
        batch_size = batch_size or self.batch_size
        inputs = {"pixel_values": torch.randn(batch_size, 3, *image_size(model_class))}
        if model_class is hubformers.SwinForMaskedImageModeling:
            height, width = grid(model_class, 0)
            inputs["bool_masked_pos"] = torch.rand(batch_size, height * width) < 0.5
        return inputs

    def make_labels(self, model_class, inputs):
        if model_class is hubformers.SwinForImageClassification:
            return {"labels": torch.arange(len(inputs["pixel_values"])) % TINY_SWIN["num_labels"]}
        return {}

    def attention_shapes(self, model_class, inputs):
        """One map per stage (its last block's), as transformers' Swin returns: (batch x windows, heads, N, N);
        a window never exceeds the map."""
        batch, shapes = len(inputs["pixel_values"]), []
        for stage, heads in enumerate(TINY_SWIN["num_heads"]):
            height, width = grid(model_class, stage)
            window = min(TINY_SWIN["window_size"], height, width)
            windows = -(-height // window) * -(-width // window)
            shapes.append((batch * windows, heads, window**2, window**2))
        return shapes

    def hidden_state_shapes(self, model_class, inputs):
        batch = len(inputs["pixel_values"])
        widths = [TINY_SWIN["embed_dim"] * 2**stage for stage in range(STAGES)]
        if model_class is hubformers.SwinBackbone:  # the stem's map, then each stage's before merging
            maps = [(widths[0], *grid(model_class, 0))] + [(widths[s], *grid(model_class, s)) for s in range(STAGES)]
            return {"hidden_states": [(batch, *shape) for shape in maps]}
        # the embeddings, then each stage's output (merged to the next stage's size, but the last)
        stages = [min(stage, STAGES - 1) for stage in range(STAGES + 1)]
        maps = [(batch, widths[s], *grid(model_class, s)) for s in stages]
        return {
            "hidden_states": [(batch, h * w, c) for _, c, h, w in maps],
            "reshaped_hidden_states": maps,
        }
