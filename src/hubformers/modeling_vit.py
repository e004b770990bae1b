"""ViT: the Vision Transformer of "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2020,
https://arxiv.org/abs/2010.11929).

The image is cut into patches, each linearly embedded, a class token prepended and positions added (Section
3.1, Eq. 1); a pre-norm Transformer encoder follows (Eq. 2-3) and a linear head reads the class token (Eq. 4).
`ViTForMaskedImageModeling` adds the SimMIM decoder. Attention runs by `attn_implementation`; a call asking for
`output_attentions` runs eager, so maps come back under any backend. Module names are transformers' own, so
its checkpoints (google/vit-*) load as they are and ours load in transformers.
"""

from typing import Unpack

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    ImageClassifierOutput,
    MaskedImageModelingOutput,
)
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .checks import check_image_size, check_patches, check_pixel_values, check_token_mask, classification_loss
from .configuration_utils import to_pair
from .configuration_vit import ViTConfig
from .modeling_common import (
    FeedForward,
    ModelNamesLayout,
    SelfAttention,
    add_branch,
    attention_mask_for,
    mask_patches,
    resize_positions,
    simmim_decoder,
    simmim_loss,
)


class ViTPatchEmbeddings(nn.Module):
    """Non-overlapping patches -> tokens: a conv whose kernel and stride are the patch size."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.num_channels = config.num_channels
        self.patch_size = to_pair(config.patch_size)
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, config.patch_size, config.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
        check_patches(pixel_values, self.patch_size)
        return self.projection(pixel_values.to(self.projection.weight.dtype))  # (batch, hidden, grid_h, grid_w)


class ViTEmbeddings(nn.Module):
    """Class token + patch tokens + learned positions; optionally a mask token swapped in for masked patches."""

    def __init__(self, config: ViTConfig, use_mask_token: bool = False):
        super().__init__()
        self.grid_size = config.grid_size
        self.image_size = to_pair(config.image_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.patch_embeddings = ViTPatchEmbeddings(config)
        num_positions = self.grid_size[0] * self.grid_size[1] + 1
        self.position_embeddings = nn.Parameter(torch.zeros(1, num_positions, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos=None, interpolate_pos_encoding: bool = False):
        patches = self.patch_embeddings(pixel_values)
        batch_size, _, grid_h, grid_w = patches.shape
        tokens = patches.flatten(2).transpose(1, 2)  # (batch, grid_h * grid_w, hidden)
        tokens = mask_patches(tokens, bool_masked_pos, self.mask_token)
        tokens = torch.cat([self.cls_token.expand(batch_size, -1, -1), tokens], dim=1)
        if interpolate_pos_encoding:
            positions = resize_positions(self.position_embeddings, self.grid_size, grid_h, grid_w)
        else:
            check_image_size(pixel_values, self.image_size)
            positions = self.position_embeddings
        return self.dropout(tokens + positions)


class ViTAttention(SelfAttention):
    """Self-attention with its output projection, which the layer applies with the residual."""

    def __init__(self, config: ViTConfig):
        super().__init__(config, config.attention_probs_dropout_prob, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)


class ViTLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + Attention(LN(x)), then x + MLP(LN(x)) (Eq. 2-3); with `num_queries`, the output
    of the first tokens alone."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ViTAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, attention_mask=None, num_queries: int | None = None, **kwargs):
        heads, _ = self.attention(self.layernorm_before(hidden_states), attention_mask, num_queries, **kwargs)
        hidden_states = add_branch(self.attention.o_proj, heads, hidden_states[:, :num_queries], self.dropout)
        return self.mlp.add_to(hidden_states, self.layernorm_after, self.dropout)


class ViTPooler(nn.Module):
    """Dense + activation on the class token (kept for checkpoints that have it)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_output_size)
        self.activation = ACT2FN[config.pooler_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class ViTPreTrainedModel(ModelNamesLayout):
    config_class = ViTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTEmbeddings", "ViTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {"hidden_states": ViTLayer, "attentions": OutputRecorder(ViTAttention, index=1)}

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, ViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=self.config.initializer_range)
            init.trunc_normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)
            if module.mask_token is not None:
                init.zeros_(module.mask_token)


class ViTModel(ViTPreTrainedModel):
    """The encoder: patch embedding, `num_hidden_layers` blocks, a final LayerNorm and an optional pooler."""

    def __init__(self, config: ViTConfig, add_pooling_layer: bool = True, use_mask_token: bool = False):
        super().__init__(config)
        self.embeddings = ViTEmbeddings(config, use_mask_token=use_mask_token)
        self.layers = nn.ModuleList([ViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        attention_mask: torch.Tensor | None = None,
        class_token_only: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """`attention_mask`: (batch, 1 + num_patches), 0 for tokens (class token first) hidden from every query.
        `class_token_only`: the last layer computes the class token alone (all a head on it reads), so
        `last_hidden_state` is (batch, 1, hidden); it saves 7% of ViT-B/16, and is ignored with an `attention_mask`."""
        hidden_states = self.embeddings(pixel_values, bool_masked_pos, interpolate_pos_encoding)
        check_token_mask(attention_mask, hidden_states.shape[:2])
        mask = attention_mask_for(self.config, kwargs, hidden_states, attention_mask)
        class_token_only = class_token_only and mask is None  # a mask's rows are for every query
        for index, layer in enumerate(self.layers):
            last = index == len(self.layers) - 1
            hidden_states = layer(hidden_states, mask, 1 if class_token_only and last else None, **kwargs)
        sequence_output = self.layernorm(hidden_states)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class ViTForImageClassification(ViTPreTrainedModel):
    """A linear head on the final class token; the loss follows `config.problem_type` (`classification_loss`)."""

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        self.vit = ViTModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        # the class token is all the head reads, unless every layer's tokens or attention maps are asked for
        wants_all = any(
            kwargs.get(name, getattr(self.config, name)) for name in ("output_hidden_states", "output_attentions")
        )
        outputs = self.vit(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            attention_mask=attention_mask,
            class_token_only=not wants_all,
            **kwargs,
        )
        logits = self.classifier(outputs.last_hidden_state[:, 0])
        loss = classification_loss(self, labels, logits, **kwargs) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class ViTForMaskedImageModeling(ViTPreTrainedModel):
    """SimMIM: a learned token replaces masked patches, a 1x1 conv + pixel shuffle predicts the pixels, and the
    loss is the L1 error on masked pixels only (Xie et al., 2021, Section 3)."""

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        self.vit = ViTModel(config, add_pooling_layer=False, use_mask_token=True)
        self.decoder = simmim_decoder(config.hidden_size, config.encoder_stride, config.num_channels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedImageModelingOutput:
        patch_h, patch_w = to_pair(self.config.patch_size)
        if bool_masked_pos is not None and (patch_h, patch_w) != to_pair(self.config.encoder_stride):
            raise ValueError(
                f"A masked-image-modeling loss needs `encoder_stride` == `patch_size` so the reconstruction matches "
                f"the input, got encoder_stride={self.config.encoder_stride}, patch_size={self.config.patch_size}."
            )
        outputs = self.vit(pixel_values, bool_masked_pos, interpolate_pos_encoding, attention_mask, **kwargs)
        grid_h, grid_w = pixel_values.shape[-2] // patch_h, pixel_values.shape[-1] // patch_w
        # patch tokens (batch, grid_h * grid_w, hidden) -> feature map (batch, hidden, grid_h, grid_w)
        feature_map = outputs.last_hidden_state[:, 1:].transpose(1, 2).unflatten(2, (grid_h, grid_w))
        reconstruction = self.decoder(feature_map)
        loss = None
        if bool_masked_pos is not None:
            loss = simmim_loss(pixel_values, reconstruction, bool_masked_pos, (patch_h, patch_w))
        return MaskedImageModelingOutput(
            loss=loss, reconstruction=reconstruction, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# transformers' ViT checkpoints keep the pre-5.0 key layout, which its "ViTModel" conversion renames; registered
# for our model type too, as transformers skips conversions for custom classes otherwise.
register_checkpoint_conversion_mapping(
    ViTConfig.model_type, get_checkpoint_conversion_mapping("ViTModel"), overwrite=True
)

__all__ = ["ViTForImageClassification", "ViTForMaskedImageModeling", "ViTModel", "ViTPreTrainedModel"]
