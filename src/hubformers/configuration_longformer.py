"""Longformer configuration: the hyper-parameters of "Longformer: The Long-Document Transformer" (Beltagy et al.,
2020), a RoBERTa whose self-attention is a (dilated) sliding window plus global attention on chosen tokens.

Field names follow transformers' `LongformerConfig`, so a `config.json` written by transformers (what
allenai/longformer-base-4096 is) loads as ours; `attention_dilation` is ours (transformers has none).
Paper: https://arxiv.org/abs/2004.05150 (Section 3.1 for the attention patterns, Section 4.1 for the
per-layer windows and dilations, Section 5 for the RoBERTa checkpoint the base model starts from).
"""

from huggingface_hub.dataclasses import strict
from transformers import LongformerConfig as TransformersLongformerConfig

from .checks import (
    require_activation,
    require_divisible,
    require_positive,
    require_probability,
    require_token_id,
)
from .configuration_utils import HubformersConfig

# RoBERTa's special tokens (<s>, <pad>, </s>), which the Longformer checkpoints keep.
ROBERTA_TOKEN_IDS = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "sep_token_id": 2}

# What each Auto class loads from a saved folder, under `trust_remote_code=True` where hubformers is not
# installed; `import hubformers` registers the same classes with transformers' Auto classes.
AUTO_MAP = {
    "AutoConfig": "configuration_longformer.LongformerConfig",
    "AutoModel": "modeling_longformer.LongformerModel",
    "AutoModelForMaskedLM": "modeling_longformer.LongformerForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_longformer.LongformerForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_longformer.LongformerForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_longformer.LongformerForQuestionAnswering",
    "AutoModelForMultipleChoice": "modeling_longformer.LongformerForMultipleChoice",
}


def per_layer(name: str, value: int | list[int], num_layers: int) -> list[int]:
    """An int (the same for every layer) or one value per layer -> a list of `num_layers` ints."""
    values = [value] * num_layers if isinstance(value, int) else list(value)
    if len(values) != num_layers:
        raise ValueError(f"`{name}` needs one value per layer ({num_layers}), got {len(values)}: {value!r}.")
    return values


def per_head_dilation(layer: int, dilation, num_heads: int) -> int | list[int]:
    """A layer's dilation: an int >= 1 for all its heads, or a list of one for each head."""
    is_list = isinstance(dilation, (list, tuple))
    values = list(dilation) if is_list else [dilation]
    if is_list and len(values) != num_heads:
        raise ValueError(
            f"`attention_dilation` of layer {layer} needs one value per head ({num_heads}) when it is a list, "
            f"got {len(values)}: {dilation!r}."
        )
    if not all(type(value) is int and value >= 1 for value in values):
        raise ValueError(f"`attention_dilation` must hold integers >= 1, got {dilation!r} for layer {layer}.")
    return values if is_list else dilation


@strict(accept_kwargs=True)
class LongformerConfig(HubformersConfig):
    r"""
    Configuration of a hubformers Longformer. The defaults give longformer-base-4096's architecture.

    Args:
        attention_window: tokens each token attends to around itself (an even int, or one per layer): a
            window of W attends to W/2 neighbours on each side (paper Section 3.1, "sliding window").
        attention_dilation: gap between attended neighbours (an int >= 1; or one per layer, each an int or a
            list of one per head, as the paper gives heads of a layer different dilations): with dilation d a
            token at i attends to i + d*k for |k| <= W/2 ("dilated sliding window"), with any even window;
            1 everywhere in transformers.
        vocab_size / hidden_size / num_hidden_layers / num_attention_heads / intermediate_size: RoBERTa's sizes.
        hidden_act: activation of the MLP (any name in transformers' `ACT2FN`).
        hidden_dropout_prob / attention_probs_dropout_prob: dropout after projections / on attention weights.
        max_position_embeddings: rows of the position table (RoBERTa offsets positions by `pad_token_id + 1`,
            so the longest input is `max_position_embeddings - pad_token_id - 1` tokens).
        type_vocab_size: token type embeddings; layer_norm_eps: epsilon of every LayerNorm.
        pad_token_id / bos_token_id / eos_token_id / sep_token_id: RoBERTa's special tokens; `sep_token_id`
            ends the question, which gets global attention by default in question answering. Left unset they
            are RoBERTa's (1, 0, 2, 2), where the vocabulary holds them: otherwise None, and padding (which the
            embeddings need) the last id.
    """

    model_type = "hubformers_longformer"
    transformers_config = TransformersLongformerConfig

    attention_window: list[int] | int = 512
    attention_dilation: list[int | list[int]] | int = 1
    sep_token_id: int | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 4098
    type_vocab_size: int = 1
    initializer_range: float | int = 0.02
    layer_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        kwargs = self.read_extra_kwargs(kwargs)
        kwargs.pop("onnx_export", None)  # transformers' flag for its own export path; ours needs none
        require_positive(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        require_divisible("hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads)
        self.attention_window = per_layer("attention_window", self.attention_window, self.num_hidden_layers)
        self.attention_dilation = per_layer("attention_dilation", self.attention_dilation, self.num_hidden_layers)
        require_positive(attention_window=self.attention_window)
        for layer, window in enumerate(self.attention_window):
            if window % 2 != 0:
                raise ValueError(
                    f"`attention_window` of layer {layer} must be even (W/2 neighbours on each side), "
                    f"got attention_window={window}."
                )
        self.attention_dilation = [
            per_head_dilation(layer, dilation, self.num_attention_heads)
            for layer, dilation in enumerate(self.attention_dilation)
        ]
        for name, default in ROBERTA_TOKEN_IDS.items():
            if getattr(self, name) is None:
                fallback = self.vocab_size - 1 if name == "pad_token_id" else None
                setattr(self, name, default if default < self.vocab_size else fallback)
        require_token_id(
            self.vocab_size,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            sep_token_id=self.sep_token_id,
        )
        for eos_token_id in self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]:
            require_token_id(self.vocab_size, eos_token_id=eos_token_id)
        if not 0 <= self.pad_token_id < self.max_position_embeddings - 1:
            raise ValueError(
                f"`pad_token_id` must be in [0, max_position_embeddings - 1) (RoBERTa counts positions from it), "
                f"got {self.pad_token_id} with max_position_embeddings={self.max_position_embeddings}."
            )
        for layer, window in enumerate(self.attention_window):
            if window > self.max_input_length:
                raise ValueError(
                    f"`attention_window` of layer {layer} ({window}) is longer than any input the position table "
                    f"covers: max_position_embeddings - pad_token_id - 1 = {self.max_input_length} tokens."
                )
        require_probability(
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
        )
        require_activation("hidden_act", self.hidden_act)
        super().__post_init__(**kwargs)
        self.auto_map = {**AUTO_MAP, **(getattr(self, "auto_map", None) or {})}

    def validate_output_attentions(self):
        """Overrides transformers' check: Longformer's own attention always returns its probabilities."""

    @property
    def max_input_length(self) -> int:
        """The longest input the position table covers (RoBERTa's positions start after `pad_token_id`)."""
        return self.max_position_embeddings - self.pad_token_id - 1


__all__ = ["LongformerConfig"]
