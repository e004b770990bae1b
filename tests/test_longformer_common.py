"""Longformer through the shared model tests (model_tester.py): LongformerModel and its five heads against
transformers' Longformer, with padding and global tokens in the batch."""

import torch
import transformers
from model_tester import ModelTester
from test_longformer import TINY_LONGFORMER

import hubformers

LENGTH, CHOICES = 13, 2
# per row: the global tokens and the padding at the tail (the largest number of global tokens, 2, must not be the
# batch size, which the batching check tells apart by size)
GLOBAL_TOKENS, PADDING = [(0, 5), (0,), ()], [0, 0, 3]


class TestLongformer(ModelTester):
    all_model_classes = (
        hubformers.LongformerModel,
        hubformers.LongformerForMaskedLM,
        hubformers.LongformerForSequenceClassification,
        hubformers.LongformerForTokenClassification,
        hubformers.LongformerForQuestionAnswering,
        hubformers.LongformerForMultipleChoice,
    )
    reference_classes = {cls: getattr(transformers, cls.__name__) for cls in all_model_classes}
    common_properties = ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size")
    # transformers' LongformerModelTester
    minimal_config_kwargs = {
        hubformers.LongformerConfig: dict(
            vocab_size=99,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            attention_window=4,
            max_position_embeddings=512,
            type_vocab_size=16,
        )
    }
    xfail = {}
    skip = {}

    def config_kwargs(self, model_class):
        return {**TINY_LONGFORMER, "num_labels": 2 if model_class is hubformers.LongformerForQuestionAnswering else 3}

    def make_inputs(self, model_class, batch_size=None):
        batch_size = batch_size or self.batch_size
        input_ids = torch.randint(3, TINY_LONGFORMER["vocab_size"], (batch_size, LENGTH))
        attention_mask = torch.ones_like(input_ids)
        global_attention_mask = torch.zeros_like(input_ids)
        for row in range(batch_size):
            padding = PADDING[row % len(PADDING)]
            input_ids[row, LENGTH - padding :] = 1  # pad_token_id
            attention_mask[row, LENGTH - padding :] = 0
            global_attention_mask[row, list(GLOBAL_TOKENS[row % len(GLOBAL_TOKENS)])] = 1
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask)
        if model_class is hubformers.LongformerForMultipleChoice:  # each row's choices: its tokens, then rolled
            inputs = {k: torch.stack([v, v.roll(1, dims=0)], dim=1) for k, v in inputs.items()}
        return inputs

    def make_labels(self, model_class, inputs):
        ids = inputs["input_ids"]
        batch = len(ids)
        if model_class in (hubformers.LongformerForMaskedLM, hubformers.LongformerForTokenClassification):
            classes = TINY_LONGFORMER["vocab_size"] if model_class is hubformers.LongformerForMaskedLM else 3
            labels = torch.randint(0, classes, ids.shape)
            return {"labels": labels.masked_fill(inputs["attention_mask"] == 0, -100)}
        if model_class is hubformers.LongformerForSequenceClassification:
            return {"labels": torch.arange(batch) % 3}
        if model_class is hubformers.LongformerForMultipleChoice:
            return {"labels": torch.arange(batch) % CHOICES}
        if model_class is hubformers.LongformerForQuestionAnswering:
            return {"start_positions": torch.arange(batch) + 1, "end_positions": torch.arange(batch) + 4}
        return {}

    def rows(self, model_class, inputs) -> int:
        return inputs["input_ids"].reshape(-1, LENGTH).shape[0]

    def attention_shapes(self, model_class, inputs):
        """(batch, heads, tokens, global tokens + window + 1) for the local probabilities of each layer."""
        num_global = int(inputs["global_attention_mask"].reshape(-1, LENGTH).sum(-1).max())
        rows, heads = self.rows(model_class, inputs), TINY_LONGFORMER["num_attention_heads"]
        return [(rows, heads, LENGTH, num_global + window + 1) for window in TINY_LONGFORMER["attention_window"]]

    def hidden_state_shapes(self, model_class, inputs):
        shape = (self.rows(model_class, inputs), LENGTH, TINY_LONGFORMER["hidden_size"])
        return {"hidden_states": [shape] * (TINY_LONGFORMER["num_hidden_layers"] + 1)}
