"""ViT through the shared model tests (model_tester.py): ViTModel and both heads against transformers' ViT."""

import torch
import transformers
from conftest import TINY_VIT
from model_tester import ModelTester

import hubformers

PATCHES = (TINY_VIT["image_size"] // TINY_VIT["patch_size"]) ** 2


class TestViT(ModelTester):
    all_model_classes = (
        hubformers.ViTModel,
        hubformers.ViTForImageClassification,
        hubformers.ViTForMaskedImageModeling,
    )
    reference_classes = {
        hubformers.ViTModel: transformers.ViTModel,
        hubformers.ViTForImageClassification: transformers.ViTForImageClassification,
        hubformers.ViTForMaskedImageModeling: transformers.ViTForMaskedImageModeling,
    }
    # transformers' ViTModelTester
    minimal_config_kwargs = {
        hubformers.ViTConfig: dict(
            image_size=30,
            patch_size=2,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            encoder_stride=2,
        )
    }
    xfail = {}
    skip = {}

    def config_kwargs(self, model_class):
        return dict(TINY_VIT)

    def make_inputs(self, model_class, batch_size=None):
        batch_size = batch_size or self.batch_size
        inputs = {"pixel_values": torch.randn(batch_size, 3, TINY_VIT["image_size"], TINY_VIT["image_size"])}
        if model_class is hubformers.ViTForMaskedImageModeling:
            inputs["bool_masked_pos"] = torch.rand(batch_size, PATCHES) < 0.5
        return inputs

    def make_labels(self, model_class, inputs):
        if model_class is hubformers.ViTForImageClassification:
            return {"labels": torch.arange(len(inputs["pixel_values"])) % TINY_VIT["num_labels"]}
        return {}

    def attention_shapes(self, model_class, inputs):
        tokens = PATCHES + 1
        shape = (len(inputs["pixel_values"]), TINY_VIT["num_attention_heads"], tokens, tokens)
        return [shape] * TINY_VIT["num_hidden_layers"]

    def hidden_state_shapes(self, model_class, inputs):
        shape = (len(inputs["pixel_values"]), PATCHES + 1, TINY_VIT["hidden_size"])
        return {"hidden_states": [shape] * (TINY_VIT["num_hidden_layers"] + 1)}
