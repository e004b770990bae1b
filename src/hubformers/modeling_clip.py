"""CLIP: "Learning Transferable Visual Models From Natural Language Supervision" (Radford et al., 2021).

An image encoder and a text encoder are trained together so that matching (image, text) pairs score highest in
a shared embedding space: both features are projected, L2-normalised, and their cosine similarities, scaled by a
learned temperature, are the logits of a symmetric cross-entropy over the batch (Section 2.3, Figure 3).
Paper: https://arxiv.org/abs/2103.00020.

- The vision tower (Section 2.4) is a ViT with an extra LayerNorm before the encoder, pooled at the class token;
  it shares the attention, MLP and position resize with ViT (modeling_common.py).
- The text tower is a causal Transformer whose state at the end-of-text token (the first `eos_token_id`, so
  tokens added to the vocabulary do not break it) is the text's feature.
- Under `torch.distributed`, the loss gathers every rank's features with their gradients so the negatives span
  the global batch, as open_clip does; DDP's gradient averaging then gives the single-process gradients.

Module names are transformers' own, so folders written by transformers' `CLIPModel` (openai/clip-vit-base-patch32
on the Hub) load as they are, and ours load in transformers.
"""

from dataclasses import dataclass
from typing import Any, Unpack

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import PrefixChange
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .checks import (
    Requirement,
    check_image_size,
    check_patches,
    check_pixel_values,
    check_requirements,
    indices_requirement,
)
from .configuration_clip import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from .configuration_utils import to_pair
from .modeling_common import (
    FeedForward,
    ModelNamesLayout,
    SelfAttention,
    add_branch,
    attention_mask_for,
    resize_positions,
)


@dataclass
class CLIPOutput(ModelOutput):
    """`logits_per_image` (images, texts) and `logits_per_text` (texts, images): scaled cosine similarities;
    `image_embeds` / `text_embeds`: the normalised projected features; `loss` with `return_loss=True`."""

    loss: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


@dataclass
class CLIPTextModelOutput(ModelOutput):
    text_embeds: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class CLIPVisionModelOutput(ModelOutput):
    image_embeds: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def contrastive_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy: text i's match is image i, and image i's is text i (Figure 3)."""
    targets = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.t(), targets)) / 2


class GatherWithGradients(torch.autograd.Function):
    """all_gather along dim 0 whose backward hands each rank the gradient of its own rows, summed over the ranks
    (every rank's loss depends on every rank's features). Works with gloo, which has no reduce_scatter."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class CLIPVisionEmbeddings(nn.Module):
    """Class embedding + patch embeddings (a bias-free conv) + learned positions."""

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.num_channels = config.num_channels
        self.grid_size = config.grid_size
        self.image_size = to_pair(config.image_size)
        self.patch_size = to_pair(config.patch_size)
        self.class_embedding = nn.Parameter(torch.zeros(config.hidden_size))
        self.patch_embedding = nn.Conv2d(
            config.num_channels, config.hidden_size, config.patch_size, stride=config.patch_size, bias=False
        )
        self.position_embedding = nn.Embedding(self.grid_size[0] * self.grid_size[1] + 1, config.hidden_size)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
        check_patches(pixel_values, self.patch_size)
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        batch_size, _, grid_h, grid_w = patches.shape
        tokens = patches.flatten(2).transpose(1, 2)  # (batch, hidden, grid_h, grid_w) -> (batch, patches, hidden)
        tokens = torch.cat([self.class_embedding.expand(batch_size, 1, -1), tokens], dim=1)
        # through the module, not its weight, so that hooks on it (accelerate's offloading) see the call
        positions = self.position_embedding(torch.arange(self.position_embedding.num_embeddings, device=tokens.device))
        positions = positions.unsqueeze(0)  # (1, 1 + patches, hidden)
        if interpolate_pos_encoding:
            positions = resize_positions(positions, self.grid_size, grid_h, grid_w)
        else:
            check_image_size(pixel_values, self.image_size)
        return tokens + positions


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.token_embedding(input_ids) + self.position_embedding(position_ids)


class CLIPAttention(SelfAttention):
    """Self-attention with its output projection, which the layer applies with the residual; the causal text
    tower passes its mask in."""

    def __init__(self, config: CLIPTextConfig | CLIPVisionConfig):
        super().__init__(config, config.attention_dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)


class CLIPEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm block, as ViT's: x + Attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: CLIPTextConfig | CLIPVisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CLIPAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ):
        heads, _ = self.self_attn(self.layer_norm1(hidden_states), attention_mask, **kwargs)
        hidden_states = add_branch(self.self_attn.out_proj, heads, hidden_states)
        return self.mlp.add_to(hidden_states, self.layer_norm2)


class CLIPEncoder(nn.Module):
    def __init__(self, config: CLIPTextConfig | CLIPVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ):
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask, **kwargs)
        return hidden_states


class CLIPPreTrainedModel(ModelNamesLayout):
    config_class = CLIPConfig
    base_model_prefix = "clip"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]
    _keys_to_ignore_on_load_unexpected = [r"position_ids"]  # a buffer that older transformers checkpoints saved
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {
        "hidden_states": CLIPEncoderLayer,
        "attentions": OutputRecorder(CLIPAttention, index=1),
    }

    def _init_weights(self, module):
        """Linear and embedding weights ~ N(0, initializer_range) (transformers' default), the class embedding
        ~ N(0, width^-0.5) and the joint projections ~ N(0, width^-0.5) as in CLIP; the logit scale from the config."""
        super()._init_weights(module)
        factor = self.config.initializer_factor
        # the projections are matched as modules, not through their model: loading initialises only the modules
        # whose weights the checkpoint lacks
        projections = [getattr(self, name, None) for name in ("text_projection", "visual_projection")]
        if isinstance(module, CLIPVisionEmbeddings):
            init.normal_(module.class_embedding, std=module.class_embedding.shape[0] ** -0.5 * factor)
        elif any(module is projection for projection in projections):
            init.normal_(module.weight, std=module.in_features**-0.5 * factor)
        elif isinstance(module, CLIPModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)


def check_input_ids(input_ids: torch.Tensor | None, max_positions: int) -> None:
    """A non-empty (batch, length) integer tensor, no longer than the position table."""
    if input_ids is None:
        raise ValueError("`input_ids` are missing: tokenize the text first (CLIPProcessor(text=...)).")
    if input_ids.ndim != 2 or input_ids.is_floating_point():
        raise ValueError(
            f"`input_ids` must be integers of shape (batch, length), got {input_ids.dtype} of shape "
            f"{tuple(input_ids.shape)}."
        )
    if input_ids.numel() == 0:
        raise ValueError(
            f"`input_ids` must hold at least one text of at least one token, got shape {tuple(input_ids.shape)}."
        )
    if input_ids.shape[1] > max_positions:
        raise ValueError(
            f"`input_ids` has {input_ids.shape[1]} tokens, more than the {max_positions} positions the text tower "
            "has (config.max_position_embeddings); truncate the text (CLIPProcessor does by default)."
        )


def check_attention_mask(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> None:
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"`attention_mask` must have the shape of `input_ids` {tuple(input_ids.shape)} (batch, length), "
            f"got {tuple(attention_mask.shape)}."
        )


def check_position_ids(position_ids: torch.Tensor | None, input_ids: torch.Tensor) -> None:
    """Integer positions of shape (length,), (1, length) or (batch, length)."""
    if position_ids is None:
        return
    batch_size, length = input_ids.shape
    if position_ids.is_floating_point() or position_ids.shape not in ((length,), (1, length), (batch_size, length)):
        raise ValueError(
            f"`position_ids` must be integers of shape ({length},), (1, {length}) or ({batch_size}, {length}), "
            f"got {position_ids.dtype} of shape {tuple(position_ids.shape)}."
        )


class CLIPTextModel(CLIPPreTrainedModel):
    """The text tower: token + position embeddings, causal blocks, a final LayerNorm; pooled at the first
    end-of-text token."""

    config_class = CLIPTextConfig
    input_modalities = ("text",)
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer"]

    def __init__(self, config: CLIPTextConfig):
        super().__init__(config)
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.token_embedding

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.token_embedding = value

    @property
    def text_model(self) -> "CLIPTextModel":
        """The tower itself, where transformers' CLIPTextModel holds a `text_model`: diffusers' `clip_skip` applies
        `text_encoder.text_model.final_layer_norm` to an earlier layer's hidden states."""
        return self

    def check_inputs(
        self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None
    ) -> None:
        """Shapes, then the values: ids and positions inside the embedding tables (their sizes, so resized
        embeddings are followed) and an end-of-text token in every text, where the tower pools, all read back
        at once (see `check_requirements`)."""
        check_input_ids(input_ids, self.embeddings.position_embedding.num_embeddings)
        check_attention_mask(attention_mask, input_ids)
        check_position_ids(position_ids, input_ids)
        vocab_size = self.embeddings.token_embedding.num_embeddings
        requirements = [indices_requirement("input_ids", input_ids, vocab_size, f"vocab_size={vocab_size}")]
        if position_ids is not None:
            rows = self.embeddings.position_embedding.num_embeddings
            requirements.append(
                indices_requirement("position_ids", position_ids, rows, f"max_position_embeddings={rows}")
            )
        has_eos = (input_ids == self.config.eos_token_id).any(dim=1)
        message = (
            f"Every text must hold an end-of-text token (eos_token_id={self.config.eos_token_id}), where the text "
            "tower pools; tokenize with the CLIP tokenizer, which appends it"
        )
        requirements.append(
            Requirement(has_eos.all(), message, lambda: f"none in texts {(~has_eos).nonzero().flatten().tolist()}")
        )
        check_requirements(*requirements)

    def end_of_text_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch,) index of each text's first `eos_token_id` (`check_inputs` made sure there is one)."""
        return (input_ids == self.config.eos_token_id).int().argmax(dim=1)

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        if "inputs_embeds" in kwargs:
            raise ValueError(
                "The CLIP text tower takes `input_ids`, not `inputs_embeds` (as transformers' CLIPTextModel): it pools "
                "at the end-of-text token, which only the ids mark."
            )
        self.check_inputs(input_ids, attention_mask, position_ids)
        hidden_states = self.embeddings(input_ids, position_ids)
        batch_size = hidden_states.shape[0]
        mask = attention_mask_for(self.config, kwargs, hidden_states, attention_mask, causal=True)
        # `is_causal` for the backends that take the causality as a flag where the mask is left out
        hidden_states = self.final_layer_norm(self.encoder(hidden_states, mask, is_causal=True, **kwargs))
        pooled = hidden_states[
            torch.arange(batch_size, device=hidden_states.device), self.end_of_text_positions(input_ids)
        ]
        return BaseModelOutputWithPooling(last_hidden_state=hidden_states, pooler_output=pooled)


class CLIPVisionModel(CLIPPreTrainedModel):
    """The vision tower: ViT embeddings, a LayerNorm, the blocks; the class token, normalised, is pooled."""

    config_class = CLIPVisionConfig
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["CLIPVisionEmbeddings", "CLIPEncoderLayer"]

    def __init__(self, config: CLIPVisionConfig):
        super().__init__(config)
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # sic: transformers' name
        self.encoder = CLIPEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embedding

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        if pixel_values is None:
            raise ValueError("`pixel_values` are missing: preprocess the images first (CLIPProcessor(images=...)).")
        hidden_states = self.pre_layrnorm(self.embeddings(pixel_values, interpolate_pos_encoding))
        hidden_states = self.encoder(hidden_states, None, **kwargs)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states, pooler_output=self.post_layernorm(hidden_states[:, 0])
        )


class CLIPModel(CLIPPreTrainedModel):
    """Both towers, their projections into the joint space and the learned logit scale (temperature)."""

    def __init__(self, config: CLIPConfig):
        super().__init__(config)
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """The text tower's outputs, `pooler_output` projected into the joint space (not normalised), as in
        transformers 5."""
        outputs = self.text_model(input_ids, attention_mask, position_ids, **kwargs)
        outputs.pooler_output = self.text_projection(outputs.pooler_output)
        return outputs

    @can_return_tuple
    def get_image_features(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPooling:
        """The vision tower's outputs, `pooler_output` projected into the joint space (not normalised)."""
        outputs = self.vision_model(pixel_values, interpolate_pos_encoding, **kwargs)
        outputs.pooler_output = self.visual_projection(outputs.pooler_output)
        return outputs

    def logit_scale_value(self) -> torch.Tensor:
        """exp of the learned log scale, clamped to [0, config.logit_scale_max] (Section 2.5)."""
        return self.logit_scale.clamp(0.0, self.config.logit_scale_max).exp()

    def contrastive_loss(self, text_embeds: torch.Tensor, image_embeds: torch.Tensor, logits_per_text: torch.Tensor):
        """The loss over the global batch: under torch.distributed every rank's (normalised) features are
        gathered with their gradients, so each rank computes the loss of the concatenated batch."""
        if text_embeds.shape[0] != image_embeds.shape[0]:
            raise ValueError(
                f"`return_loss=True` needs one text per image (pairs), got {image_embeds.shape[0]} images and "
                f"{text_embeds.shape[0]} texts."
            )
        if is_distributed():
            text_embeds, image_embeds = GatherWithGradients.apply(text_embeds), GatherWithGradients.apply(image_embeds)
            logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale_value()
        return contrastive_loss(logits_per_text)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CLIPOutput:
        if input_ids is None or pixel_values is None:
            missing = [
                name for name, value in (("input_ids", input_ids), ("pixel_values", pixel_values)) if value is None
            ]
            raise ValueError(
                f"CLIPModel needs both `input_ids` and `pixel_values`, got no {' and no '.join(missing)}; "
                "use get_text_features / get_image_features for one modality."
            )
        vision_outputs = self.get_image_features(pixel_values, interpolate_pos_encoding, **kwargs)
        text_outputs = self.get_text_features(input_ids, attention_mask, position_ids, **kwargs)
        image_embeds = F.normalize(vision_outputs.pooler_output, dim=-1)
        text_embeds = F.normalize(text_outputs.pooler_output, dim=-1)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale_value()
        loss = self.contrastive_loss(text_embeds, image_embeds, logits_per_text) if return_loss else None
        return CLIPOutput(
            loss=loss,
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


class CLIPTextModelWithProjection(CLIPPreTrainedModel):
    """The text tower and its projection: `text_embeds` in the joint space (not normalised)."""

    config_class = CLIPTextConfig
    base_model_prefix = "text_model"
    input_modalities = ("text",)
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer"]

    def __init__(self, config: CLIPTextConfig):
        super().__init__(config)
        self.text_model = CLIPTextModel._from_config(config)
        self.text_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.embeddings.token_embedding

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_model.embeddings.token_embedding = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CLIPTextModelOutput:
        outputs = self.text_model(input_ids, attention_mask, position_ids, **kwargs)
        return CLIPTextModelOutput(
            text_embeds=self.text_projection(outputs.pooler_output),
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class CLIPVisionModelWithProjection(CLIPPreTrainedModel):
    """The vision tower and its projection: `image_embeds` in the joint space (not normalised)."""

    config_class = CLIPVisionConfig
    base_model_prefix = "vision_model"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["CLIPVisionEmbeddings", "CLIPEncoderLayer"]

    def __init__(self, config: CLIPVisionConfig):
        super().__init__(config)
        self.vision_model = CLIPVisionModel._from_config(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.vision_model.embeddings.patch_embedding

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CLIPVisionModelOutput:
        outputs = self.vision_model(pixel_values, interpolate_pos_encoding, **kwargs)
        return CLIPVisionModelOutput(
            image_embeds=self.visual_projection(outputs.pooler_output),
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


# transformers' CLIPTextModel / CLIPVisionModel folders keep their tower's prefix ("text_model.", "vision_model.")
# in the keys, as a CLIPModel's do; transformers strips it on load for its classes of these names. Registered for
# our model types too, because transformers skips conversions for custom (non-transformers) classes otherwise.
register_checkpoint_conversion_mapping(
    CLIPTextConfig.model_type, [PrefixChange(prefix_to_remove="text_model")], overwrite=True
)
register_checkpoint_conversion_mapping(
    CLIPVisionConfig.model_type, [PrefixChange(prefix_to_remove="vision_model")], overwrite=True
)

__all__ = [
    "CLIPModel",
    "CLIPPreTrainedModel",
    "CLIPTextModel",
    "CLIPTextModelWithProjection",
    "CLIPVisionModel",
    "CLIPVisionModelWithProjection",
]
