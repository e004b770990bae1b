"""ViT: the Vision Transformer of "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2020).

The image is cut into patches, each patch linearly embedded, a class token prepended and position
embeddings added (Section 3.1, Eq. 1); a pre-norm Transformer encoder follows (Eq. 2-3) and a linear
head reads the class token (Eq. 4). `ViTForMaskedImageModeling` adds the SimMIM decoder
(Xie et al., 2021, https://arxiv.org/abs/2111.09886). Paper: https://arxiv.org/abs/2010.11929.

Attention goes through transformers' interface (`attn_implementation` = eager, sdpa, flex_attention);
a call that asks for `output_attentions` runs the eager path for that call only, so attention maps
come back whatever the model was loaded with. Module names are transformers' own, so checkpoints written
by transformers' ViT (google/vit-* on the Hub) load as they are and ours load in transformers. CLIP's vision
tower (modeling_clip.py) reuses the attention (`multi_head_attention`), the MLP and `interpolate_positions`.
"""

from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    ImageClassifierOutput,
    MaskedImageModelingOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .checks import check_image_size, check_patches, check_pixel_values, check_token_mask, classification_loss
from .chunking import in_row_chunks
from .configuration_vit import ViTConfig, to_pair
from .fused_linear import linear_layer


class ViTPatchEmbeddings(nn.Module):
    """Non-overlapping patches -> tokens: a conv whose kernel and stride are the patch size."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.num_channels = config.num_channels
        self.patch_size = to_pair(config.patch_size)
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
        check_patches(pixel_values, self.patch_size)
        pixel_values = pixel_values.to(self.projection.weight.dtype)
        return self.projection(pixel_values)  # (batch, hidden, grid_h, grid_w)


def interpolate_positions(
    positions: torch.Tensor, grid_size: tuple[int, int], grid_h: int, grid_w: int
) -> torch.Tensor:
    """Resize the patch part of (1, 1 + H*W, dim) positions (class position first, then the H x W grid row-major)
    bicubically to (grid_h, grid_w), taken from tensor shapes so that `torch.export` keeps height and width
    dynamic. The class position is kept as it is."""
    cls_pos, patch_pos = positions[:, :1], positions[:, 1:]
    dim = patch_pos.shape[-1]
    # (1, H*W, dim) -> (1, dim, H, W): interpolate works on channels-first images
    patch_pos = patch_pos.reshape(1, *grid_size, dim).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)


def mask_patches(
    tokens: torch.Tensor, bool_masked_pos: torch.Tensor | None, mask_token: nn.Parameter | None
) -> torch.Tensor:
    """(batch, num_patches, hidden) tokens with `mask_token` in place of those that `bool_masked_pos` (batch,
    num_patches) marks (SimMIM's masking)."""
    if bool_masked_pos is None:
        return tokens
    if mask_token is None:
        raise ValueError(
            "`bool_masked_pos` needs a model with a mask token (the masked-image-modeling head, or a base model "
            "built with `use_mask_token=True`)."
        )
    if bool_masked_pos.shape != tokens.shape[:2]:
        raise ValueError(
            f"`bool_masked_pos` must have shape (batch, num_patches) = {tuple(tokens.shape[:2])}, "
            f"got {tuple(bool_masked_pos.shape)}."
        )
    mask = bool_masked_pos.unsqueeze(-1).type_as(tokens)
    return tokens * (1.0 - mask) + mask_token.expand_as(tokens) * mask


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

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        patches = self.patch_embeddings(pixel_values)
        batch_size, _, grid_h, grid_w = patches.shape
        tokens = patches.flatten(2).transpose(1, 2)  # (batch, grid_h * grid_w, hidden)
        tokens = mask_patches(tokens, bool_masked_pos, self.mask_token)
        tokens = torch.cat([self.cls_token.expand(batch_size, -1, -1), tokens], dim=1)
        if interpolate_pos_encoding:
            positions = interpolate_positions(self.position_embeddings, self.grid_size, grid_h, grid_w)
        else:
            check_image_size(pixel_values, self.image_size)
            positions = self.position_embeddings
        return self.dropout(tokens + positions)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scaling + mask) v on (batch, heads, tokens, head_dim); returns the output as
    (batch, tokens, heads, head_dim), like transformers' other backends, and the attention weights."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    output = torch.matmul(F.dropout(weights, p=dropout, training=module.training), value)
    return output.transpose(1, 2).contiguous(), weights


def runs_eager(config, kwargs: dict) -> bool:
    """Whether this call's attention runs the eager path: configured, or asked for by a call that wants the
    attention maps (which the fused sdpa/flex kernels never form)."""
    return config._attn_implementation == "eager" or kwargs.get("output_attentions", config.output_attentions)


def select_attention(module: nn.Module, kwargs: dict):
    """The attention function of this call (`runs_eager`), else the configured backend."""
    if runs_eager(module.config, kwargs):
        return eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(module.config._attn_implementation, eager_attention_forward)


def attention_mask_for(
    config, kwargs: dict, embeddings: torch.Tensor, attention_mask: torch.Tensor | None, causal: bool = False
):
    """The (batch, tokens) padding mask (1 = attend), made causal when `causal`, in the form this call's backend
    takes: for eager an additive (batch, 1, tokens, tokens) float mask (the dtype's minimum where hidden), else
    transformers' own (a boolean mask for sdpa, a BlockMask for flex, the 2-D mask or None for flash), which may
    be None where nothing is hidden and the backend's own causal flag serves."""
    if runs_eager(config, kwargs):
        if attention_mask is None and not causal:
            return None
        num_tokens = embeddings.shape[1]
        visible = torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=embeddings.device)[None, None]
        if causal:
            visible = visible.tril()
        if attention_mask is not None:
            visible = visible & attention_mask[:, None, None, :].to(device=embeddings.device, dtype=torch.bool)
        hidden = torch.finfo(embeddings.dtype).min
        return torch.zeros(visible.shape, dtype=embeddings.dtype, device=embeddings.device).masked_fill(
            ~visible, hidden
        )
    if causal:
        return create_causal_mask(config=config, inputs_embeds=embeddings, attention_mask=attention_mask, cache=None)
    return create_bidirectional_mask(config=config, inputs_embeds=embeddings, attention_mask=attention_mask)


def multi_head_attention(
    module: nn.Module,
    output_projection: nn.Linear,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    num_queries: int | None = None,
    residual: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Self-attention of an attention module holding `q_proj`, `k_proj`, `v_proj`, `head_dim`, `scaling`,
    `dropout` and `config`, then `output_projection` (which adds `residual`, when given, in the same call);
    the output and the weights (None from fused kernels). With `num_queries`, only the first tokens ask (all
    are keys and values) and only they get an output. One function for the modules of ViT and CLIP, whose
    output projections have different checkpoint names."""
    batch_size = hidden_states.shape[0]

    def heads(x):  # (batch, tokens, hidden) -> (batch, heads, tokens, head_dim)
        return x.view(batch_size, x.shape[1], -1, module.head_dim).transpose(1, 2)

    query = heads(linear_layer(module.q_proj, hidden_states[:, :num_queries]))
    key = heads(linear_layer(module.k_proj, hidden_states))
    value = heads(linear_layer(module.v_proj, hidden_states))
    output, weights = select_attention(module, kwargs)(
        module,
        query,
        key,
        value,
        attention_mask,
        scaling=module.scaling,
        dropout=module.dropout if module.training else 0.0,
        **kwargs,
    )
    output = output.reshape(batch_size, query.shape[2], -1)
    return linear_layer(output_projection, output, residual=residual), weights


class ViTAttention(nn.Module):
    """Multi-head self-attention. Query, key and value keep separate projections: on the CPU one fused
    (3 * hidden) matmul measured no faster, and separate ones keep transformers' checkpoint layout."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.dropout = config.attention_probs_dropout_prob
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        num_queries: int | None = None,
        residual: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return multi_head_attention(self, self.o_proj, hidden_states, attention_mask, num_queries, residual, **kwargs)


class ViTMLP(nn.Module):
    """fc1, activation, fc2, position-wise over chunks of tokens (chunking.py); on x86 CPUs fc1 applies an exact
    GELU and fc2 adds the residual in the same oneDNN call (fused_linear.py). Sizes default to the config's
    `hidden_size` and `intermediate_size` (Swin passes its stage's)."""

    def __init__(self, config, dim: int | None = None, hidden: int | None = None):
        super().__init__()
        dim, hidden = dim or config.hidden_size, hidden or config.intermediate_size
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return in_row_chunks(self.position_wise, hidden_states, self.fc1.out_features)

    def add_to(self, hidden_states: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """hidden_states + MLP(norm(hidden_states)), over chunks of tokens, fc2 adding the residual."""

        def residual_block(chunk: torch.Tensor) -> torch.Tensor:
            return self.position_wise(norm(chunk), residual=chunk)

        return in_row_chunks(residual_block, hidden_states, self.fc1.out_features)

    def position_wise(self, hidden_states: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        hidden = linear_layer(self.fc1, hidden_states, activation=self.act)
        return linear_layer(self.fc2, hidden, residual=residual)


class ViTLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + Attention(LN(x)), then x + MLP(LN(x)) (Eq. 2-3); with `num_queries`, the output
    of the first tokens alone."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ViTAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ViTMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        num_queries: int | None = None,
        **kwargs,
    ):
        normed, residual = self.layernorm_before(hidden_states), hidden_states[:, :num_queries]
        if not self.training or self.dropout.p == 0.0:  # the projections add the residuals as they go
            hidden_states, _ = self.attention(normed, attention_mask, num_queries, residual, **kwargs)
            return self.mlp.add_to(hidden_states, self.layernorm_after)
        attended, _ = self.attention(normed, attention_mask, num_queries, **kwargs)
        hidden_states = residual + self.dropout(attended)
        return hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states)))


class ViTPooler(nn.Module):
    """Dense + activation on the class token (kept for checkpoints that have it)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_output_size)
        self.activation = ACT2FN[config.pooler_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class ViTPreTrainedModel(PreTrainedModel):
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
    _can_record_outputs = {
        "hidden_states": ViTLayer,
        "attentions": OutputRecorder(ViTAttention, index=1),
    }

    def save_pretrained(self, *args, save_original_format: bool = False, **kwargs):
        """Saves under the module names: transformers' default reverts to its pre-5.0 key layout, from which
        `Trainer` cannot resume (it restores checkpoints with a plain `load_state_dict`). Both layouts load."""
        return super().save_pretrained(*args, save_original_format=save_original_format, **kwargs)

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
        """`attention_mask`: (batch, 1 + num_patches), 1 for the tokens (class token first) that may be attended
        to, 0 for those hidden from every query, as in transformers' ViT.
        `class_token_only`: the last layer computes the class token alone (the others are keys and values
        of its attention), all that a head on the class token reads; `last_hidden_state` is then (batch, 1,
        hidden). It saves most of a layer's work: 7% of ViT-B/16. It is ignored when an `attention_mask` is given."""
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
    """A linear head on the final class token. The loss follows `config.problem_type` (single-label,
    multi-label or regression) as in transformers; when it is unset, each call infers the type from its labels
    and leaves the config unset (transformers records the first call's type). Single-label labels of -100 are
    ignored."""

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


def simmim_decoder(hidden_size: int, stride: int, num_channels: int) -> nn.Sequential:
    """SimMIM's one-layer prediction head: a 1x1 conv to stride^2 x channels, then pixel shuffle up by stride."""
    return nn.Sequential(nn.Conv2d(hidden_size, stride**2 * num_channels, kernel_size=1), nn.PixelShuffle(stride))


def simmim_loss(pixel_values, reconstruction, bool_masked_pos, patch_size: tuple[int, int]) -> torch.Tensor:
    """SimMIM's loss: the L1 error on the pixels of masked patches only, per channel (SimMIM Section 3).
    `bool_masked_pos` (batch, grid_h * grid_w) over patches of `patch_size` (height, width) pixels."""
    (patch_h, patch_w), (height, width) = patch_size, pixel_values.shape[-2:]
    pixel_mask = (
        bool_masked_pos.reshape(-1, 1, height // patch_h, width // patch_w)
        .repeat_interleave(patch_h, 2)
        .repeat_interleave(patch_w, 3)
        .to(reconstruction.dtype)
    )
    l1 = F.l1_loss(pixel_values.to(reconstruction.dtype), reconstruction, reduction="none")
    return (l1 * pixel_mask).sum() / (pixel_mask.sum() + 1e-5) / pixel_values.shape[1]


class ViTForMaskedImageModeling(ViTPreTrainedModel):
    """SimMIM: masked patches are replaced by a learned token and a 1x1 conv + pixel shuffle predicts the
    pixels; the loss is the L1 error on masked pixels only (SimMIM Section 3)."""

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
            loss=loss,
            reconstruction=reconstruction,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


# transformers' ViT checkpoints (google/vit-* on the Hub) keep the pre-5.0 key layout; its "ViTModel"
# conversion renames them to the module names we share with it. Registered for our
# model type too, because transformers skips conversions for custom (non-transformers) classes otherwise.
register_checkpoint_conversion_mapping(
    ViTConfig.model_type, get_checkpoint_conversion_mapping("ViTModel"), overwrite=True
)

__all__ = ["ViTForImageClassification", "ViTForMaskedImageModeling", "ViTModel", "ViTPreTrainedModel"]
