"""Swin configuration: the hyper-parameters of "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows" (Liu et al., 2021).

Field names follow transformers' `SwinConfig`, so a `config.json` written by transformers (what
microsoft/swin-* is on the Hub) loads as ours. The backbone fields (`out_features`, `out_indices`,
`stage_names`) are transformers' `BackboneConfigMixin`, so `SwinBackbone` plugs into its detection and
segmentation heads. Paper: https://arxiv.org/abs/2103.14030 (Section 3.3, the Swin-T/S/B/L variants).
"""

from huggingface_hub.dataclasses import strict
from transformers import SwinConfig as TransformersSwinConfig
from transformers.backbone_utils import BackboneConfigMixin

from .checks import require_activation, require_divisible, require_positive, require_probability, require_size
from .configuration_utils import HubformersConfig, to_pair

# What each Auto class loads from a saved folder, under `trust_remote_code=True` where hubformers is not
# installed; `import hubformers` registers the same classes with transformers' Auto classes.
AUTO_MAP = {
    "AutoConfig": "configuration_swin.SwinConfig",
    "AutoModel": "modeling_swin.SwinModel",
    "AutoModelForImageClassification": "modeling_swin.SwinForImageClassification",
    "AutoModelForMaskedImageModeling": "modeling_swin.SwinForMaskedImageModeling",
    "AutoBackbone": "modeling_swin.SwinBackbone",
}


@strict(accept_kwargs=True)
class SwinConfig(BackboneConfigMixin, HubformersConfig):
    r"""
    Configuration of a hubformers Swin Transformer. The defaults give Swin-T (patch 4, window 7) at 224x224.

    Args:
        image_size / patch_size: an int or an (height, width) pair. Any input size runs; `image_size` is the
            size of the absolute position embeddings (when used) and of the masked-image-modeling mask.
        num_channels: input channels.
        embed_dim: width C of the first stage; stage i is C * 2**i wide (patch merging doubles it).
        depths / num_heads: blocks and attention heads of each stage.
        window_size: side M of the attention windows (M x M patches each); odd blocks shift them by M // 2.
        mlp_ratio: MLP width as a multiple of the stage width.
        qkv_bias: whether the query/key/value projections have a bias.
        hidden_dropout_prob / attention_probs_dropout_prob: dropout after projections / on attention weights.
        drop_path_rate: stochastic depth, rising linearly over the blocks to this value.
        hidden_act: activation of the MLP (any name in transformers' `ACT2FN`).
        use_absolute_embeddings: add learned absolute position embeddings to the patch tokens.
        layer_norm_eps: epsilon of the blocks' and the final LayerNorm.
        encoder_stride: up-sampling factor of the masked-image-modeling decoder (SimMIM), the total stride.
        out_features / out_indices: the stages `SwinBackbone` returns ("stem", "stage1", ...).
    """

    model_type = "hubformers_swin"
    transformers_config = TransformersSwinConfig
    attribute_map = {"num_attention_heads": "num_heads", "num_hidden_layers": "num_layers"}

    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int | list[int] | tuple[int, int] = 4
    num_channels: int = 3
    embed_dim: int = 96
    depths: list[int] | tuple[int, ...] = (2, 2, 6, 2)
    num_heads: list[int] | tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float | int = 4.0
    qkv_bias: bool = True
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.1
    hidden_act: str = "gelu"
    use_absolute_embeddings: bool = False
    initializer_range: float | int = 0.02
    layer_norm_eps: float = 1e-5
    encoder_stride: int = 32
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        kwargs = self.read_extra_kwargs(kwargs)
        self.depths, self.num_heads = list(self.depths), list(self.num_heads)
        require_size(image_size=self.image_size, patch_size=self.patch_size)
        require_positive(
            num_channels=self.num_channels,
            embed_dim=self.embed_dim,
            depths=self.depths,
            num_heads=self.num_heads,
            window_size=self.window_size,
            mlp_ratio=self.mlp_ratio,
            encoder_stride=self.encoder_stride,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        if int(self.mlp_ratio * self.embed_dim) < 1:
            raise ValueError(
                f"`mlp_ratio` * `embed_dim` is the MLP width of the first stage and must be >= 1, got "
                f"{self.mlp_ratio} * {self.embed_dim}."
            )
        if len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"`depths` and `num_heads` must list one value per stage, got {len(self.depths)} depths "
                f"{self.depths} and {len(self.num_heads)} head counts {self.num_heads}."
            )
        for stage, heads in enumerate(self.num_heads):
            require_divisible(f"stage {stage + 1} width", self.embed_dim * 2**stage, f"num_heads[{stage}]", heads)
        for image_side, patch_side in zip(to_pair(self.image_size), to_pair(self.patch_size)):
            require_divisible("image_size", image_side, "patch_size", patch_side)
        require_probability(
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            drop_path_rate=self.drop_path_rate,
        )
        require_activation("hidden_act", self.hidden_act)
        self.num_layers = len(self.depths)
        # the width after the last stage, as transformers' SwinConfig sets it (VisionEncoderDecoder reads it)
        self.hidden_size = int(self.embed_dim * 2 ** (len(self.depths) - 1))
        self.stage_names = ["stem"] + [f"stage{idx}" for idx in range(1, len(self.depths) + 1)]
        aliases = {name: alias for alias, name in self.attribute_map.items()}
        for name in ("num_layers", "hidden_size", "stage_names"):
            # every save writes them; a value that disagrees comes from another architecture or was meant to set them
            given = kwargs.pop(name, getattr(self, name))
            if given != getattr(self, name):
                alias = f" (`{aliases[name]}`)" if name in aliases else ""
                raise ValueError(
                    f"`{name}`{alias} of a Swin follows from `depths` and `embed_dim`: {getattr(self, name)!r} here; "
                    f"set those instead, got {given!r}."
                )
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)
        self.auto_map = {**AUTO_MAP, **(getattr(self, "auto_map", None) or {})}

    def validate_output_attentions(self):
        """Overrides transformers' check: hubformers returns attention maps under every `attn_implementation`."""

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches along (height, width) at the configured image size."""
        (image_h, image_w), (patch_h, patch_w) = to_pair(self.image_size), to_pair(self.patch_size)
        return image_h // patch_h, image_w // patch_w


__all__ = ["SwinConfig"]
