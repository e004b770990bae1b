"""ViT configuration: the hyper-parameters of "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2020,
https://arxiv.org/abs/2010.11929, Table 1). Field names are transformers' `ViTConfig`'s, so its configs load.
"""

from huggingface_hub.dataclasses import strict
from transformers import ViTConfig as TransformersViTConfig

from .checks import require_activation, require_divisible, require_positive, require_probability, require_size
from .configuration_utils import HubformersConfig, to_pair

# What each Auto class loads from a saved folder with `trust_remote_code=True` (`import hubformers` registers them).
AUTO_MAP = {
    "AutoConfig": "configuration_vit.ViTConfig",
    "AutoModel": "modeling_vit.ViTModel",
    "AutoModelForImageClassification": "modeling_vit.ViTForImageClassification",
    "AutoModelForMaskedImageModeling": "modeling_vit.ViTForMaskedImageModeling",
}


@strict(accept_kwargs=True)
class ViTConfig(HubformersConfig):
    """A hubformers ViT; the defaults give ViT-B/16 at 224x224. As transformers' `ViTConfig`: `image_size` and
    `patch_size` are an int or a (height, width) pair; `layer_norm_eps` is 1e-12 in google's checkpoints, 1e-6 in
    timm's; `encoder_stride` is the up-sampling of the SimMIM decoder; `pooler_*` the pooler on the class token."""

    model_type = "hubformers_vit"
    transformers_config = TransformersViTConfig

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float | int = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int | list[int] | tuple[int, int] = 16
    num_channels: int = 3
    qkv_bias: bool = True
    encoder_stride: int = 16
    pooler_output_size: int | None = None
    pooler_act: str = "tanh"

    def __post_init__(self, **kwargs):
        kwargs = self.read_extra_kwargs(kwargs)
        self.pooler_output_size = self.pooler_output_size or self.hidden_size
        require_positive(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            num_channels=self.num_channels,
            encoder_stride=self.encoder_stride,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
            pooler_output_size=self.pooler_output_size,
        )
        require_size(image_size=self.image_size, patch_size=self.patch_size)
        require_divisible("hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads)
        for image_side, patch_side in zip(to_pair(self.image_size), to_pair(self.patch_size)):
            require_divisible("image_size", image_side, "patch_size", patch_side)
        require_probability(
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
        )
        require_activation("hidden_act", self.hidden_act)
        require_activation("pooler_act", self.pooler_act)
        super().__post_init__(**kwargs)
        self.auto_map = {**AUTO_MAP, **(getattr(self, "auto_map", None) or {})}

    def validate_output_attentions(self):
        """No check: hubformers returns attention maps under every `attn_implementation`."""

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches along (height, width) at the configured image size."""
        (image_h, image_w), (patch_h, patch_w) = to_pair(self.image_size), to_pair(self.patch_size)
        return image_h // patch_h, image_w // patch_w


__all__ = ["ViTConfig"]
