"""CLIP configurations: the text tower, the vision tower and the joint model of "Learning Transferable Visual
Models From Natural Language Supervision" (Radford et al., 2021).

Field names follow transformers' `CLIPTextConfig`, `CLIPVisionConfig` and `CLIPConfig`, so a `config.json`
written by transformers (openai/clip-vit-base-patch32 on the Hub) loads as ours. The defaults give ViT-B/32.
Paper: https://arxiv.org/abs/2103.00020 (Section 2.4 for the encoders, Table 19-20 for the sizes).
"""

import math

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig as TransformersCLIPConfig
from transformers import CLIPTextConfig as TransformersCLIPTextConfig
from transformers import CLIPVisionConfig as TransformersCLIPVisionConfig
from transformers import PreTrainedConfig

from .checks import (
    require_activation,
    require_divisible,
    require_finite,
    require_positive,
    require_probability,
    require_size,
    require_token_id,
)
from .configuration_utils import HubformersConfig, to_pair

# What each Auto class loads from a saved folder of each config (see configuration_vit.AUTO_MAP).
AUTO_MAP = {
    "AutoConfig": "configuration_clip.CLIPConfig",
    "AutoModel": "modeling_clip.CLIPModel",
    "AutoModelForZeroShotImageClassification": "modeling_clip.CLIPModel",
}
TEXT_AUTO_MAP = {
    "AutoConfig": "configuration_clip.CLIPTextConfig",
    "AutoModel": "modeling_clip.CLIPTextModel",
}
VISION_AUTO_MAP = {
    "AutoConfig": "configuration_clip.CLIPVisionConfig",
    "AutoModel": "modeling_clip.CLIPVisionModel",
}

# The end-of-text token of CLIP's BPE vocabulary (49,408 tokens), and the id openai's checkpoints on the Hub
# put in their configs instead: written before transformers made pooling look the token up by id.
CLIP_VOCAB_SIZE = 49408
CLIP_EOS_TOKEN_ID = 49407
LEGACY_EOS_TOKEN_ID = 2
# transformers' default padding id (openai's configs say 1 as well)
CLIP_PAD_TOKEN_ID = 1


def check_tower(config: PreTrainedConfig) -> None:
    """The checks both towers share."""
    require_positive(
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        projection_dim=config.projection_dim,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        layer_norm_eps=config.layer_norm_eps,
        initializer_range=config.initializer_range,
        initializer_factor=config.initializer_factor,
    )
    require_divisible("hidden_size", config.hidden_size, "num_attention_heads", config.num_attention_heads)
    require_probability(attention_dropout=config.attention_dropout)
    require_activation("hidden_act", config.hidden_act)


@strict(accept_kwargs=True)
class CLIPTextConfig(HubformersConfig):
    r"""
    The causal text Transformer; its end-of-text token's final state is the text's feature.

    Args:
        vocab_size: token ids the embedding table holds (49,408 for CLIP's BPE vocabulary).
        hidden_size / num_hidden_layers / num_attention_heads / intermediate_size: width, depth, heads, MLP width.
        projection_dim: width of the joint embedding space (`CLIPTextModelWithProjection`).
        max_position_embeddings: the position table; longer texts are a ValueError (the processor truncates).
        hidden_act: MLP activation: "quick_gelu" in OpenAI's checkpoints, "gelu" in LAION's.
        layer_norm_eps / attention_dropout / initializer_range / initializer_factor: as in transformers.
        eos_token_id: the end-of-text token whose first occurrence is pooled. A legacy config saying 2 with
            CLIP's vocabulary (openai's Hub checkpoints) is read as 49407, which is what those checkpoints meant.
        bos_token_id / pad_token_id: the start-of-text and padding tokens (the model reads neither).
            Unset special tokens sit where CLIP's vocabulary puts them: start-of-text and end-of-text are its last
            two ids (49406, 49407) and padding is 1, so the defaults fit a vocabulary of any size (one too small
            for start-of-text or padding leaves that None). Ids that are given must lie in the vocabulary.
    """

    model_type = "hubformers_clip_text_model"
    transformers_config = TransformersCLIPTextConfig
    base_config_key = "text_config"

    vocab_size: int = CLIP_VOCAB_SIZE
    hidden_size: int = 512
    intermediate_size: int = 2048
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float | int = 0.0
    initializer_range: float | int = 0.02
    initializer_factor: float | int = 1.0
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self, **kwargs):
        kwargs = self.read_extra_kwargs(kwargs)
        check_tower(self)
        require_positive(vocab_size=self.vocab_size, max_position_embeddings=self.max_position_embeddings)
        if self.eos_token_id == LEGACY_EOS_TOKEN_ID and self.vocab_size == CLIP_VOCAB_SIZE:
            self.eos_token_id = CLIP_EOS_TOKEN_ID
        if self.eos_token_id is None:
            self.eos_token_id = self.vocab_size - 1
        if self.bos_token_id is None and self.vocab_size >= 2:
            self.bos_token_id = self.vocab_size - 2
        if self.pad_token_id is None and self.vocab_size > CLIP_PAD_TOKEN_ID:
            self.pad_token_id = CLIP_PAD_TOKEN_ID
        require_token_id(
            self.vocab_size,
            eos_token_id=self.eos_token_id,
            bos_token_id=self.bos_token_id,
            pad_token_id=self.pad_token_id,
        )
        super().__post_init__(**kwargs)
        self.auto_map = {**TEXT_AUTO_MAP, **(getattr(self, "auto_map", None) or {})}

    def validate_output_attentions(self):
        """hubformers returns attention maps under every `attn_implementation`."""


@strict(accept_kwargs=True)
class CLIPVisionConfig(HubformersConfig):
    r"""
    The image Transformer: a ViT with a LayerNorm before the encoder, pooled at the class token.

    Args:
        hidden_size / num_hidden_layers / num_attention_heads / intermediate_size: width, depth, heads, MLP width.
        projection_dim: width of the joint embedding space (`CLIPVisionModelWithProjection`).
        image_size / patch_size: an int or an (height, width) pair; the patch grid is image_size / patch_size.
        num_channels: input channels.
        hidden_act / layer_norm_eps / attention_dropout / initializer_range / initializer_factor: as for the text.
    """

    model_type = "hubformers_clip_vision_model"
    transformers_config = TransformersCLIPVisionConfig
    base_config_key = "vision_config"

    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int | list[int] | tuple[int, int] = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float | int = 0.0
    initializer_range: float | int = 0.02
    initializer_factor: float | int = 1.0

    def __post_init__(self, **kwargs):
        kwargs = self.read_extra_kwargs(kwargs)
        check_tower(self)
        require_size(image_size=self.image_size, patch_size=self.patch_size)
        require_positive(num_channels=self.num_channels)
        for image_side, patch_side in zip(to_pair(self.image_size), to_pair(self.patch_size)):
            require_divisible("image_size", image_side, "patch_size", patch_side)
        super().__post_init__(**kwargs)
        self.auto_map = {**VISION_AUTO_MAP, **(getattr(self, "auto_map", None) or {})}

    def validate_output_attentions(self):
        """hubformers returns attention maps under every `attn_implementation`."""

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches along (height, width) at the configured image size."""
        (image_h, image_w), (patch_h, patch_w) = to_pair(self.image_size), to_pair(self.patch_size)
        return image_h // patch_h, image_w // patch_w


@strict(accept_kwargs=True)
class CLIPConfig(HubformersConfig):
    r"""
    The joint model: both towers, their projections into one space, and the learned temperature.

    Args:
        text_config / vision_config: dicts or configs of the towers (defaults: CLIP ViT-B/32).
        projection_dim: width of the joint embedding space.
        logit_scale_init_value: initial log of the logit scale (log(1 / 0.07), Section 2.5 of the paper).
        logit_scale_max: the log scale is clamped to [0, logit_scale_max] in the forward (log(100) as in the
            paper, "to prevent scaling the logits by more than 100").
        initializer_factor: scales every initialisation std (as in transformers).
    """

    model_type = "hubformers_clip"
    transformers_config = TransformersCLIPConfig
    sub_configs_defaults = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig}

    text_config: dict | CLIPTextConfig | None = None
    vision_config: dict | CLIPVisionConfig | None = None
    projection_dim: int = 512
    logit_scale_init_value: float | int = 2.6592
    logit_scale_max: float | int = math.log(100)
    initializer_factor: float | int = 1.0

    def __post_init__(self, **kwargs):
        for name in ("text_config", "vision_config"):
            # configs written by early transformers versions (openai's on the Hub) may give a tower here
            # instead; where they do, it is the tower (as in transformers), else the key is null
            legacy = kwargs.pop(f"{name}_dict", None)
            if legacy is not None:
                setattr(self, name, legacy)
        kwargs = self.read_extra_kwargs(kwargs)
        require_positive(
            projection_dim=self.projection_dim,
            logit_scale_max=self.logit_scale_max,
            initializer_factor=self.initializer_factor,
        )
        require_finite(logit_scale_init_value=self.logit_scale_init_value)
        super().__post_init__(**kwargs)
        for name in ("text_config", "vision_config"):
            tower = getattr(self, name)
            if tower.projection_dim != self.projection_dim:
                # transformers ignores the towers' own value inside the joint model; keep them consistent
                tower.projection_dim = self.projection_dim
        self.auto_map = {**AUTO_MAP, **(getattr(self, "auto_map", None) or {})}

    def validate_output_attentions(self):
        """hubformers returns attention maps under every `attn_implementation`."""


__all__ = ["CLIPConfig", "CLIPTextConfig", "CLIPVisionConfig"]
