"""VAE: the variational auto-encoder of "Auto-Encoding Variational Bayes" (Kingma & Welling, 2013,
https://arxiv.org/abs/1312.6114), with the encoder/decoder of latent diffusion's autoencoder.

The encoder gives the diagonal Gaussian posterior q(z|x) (Section 3, Eq. 9; Appendix C.2), z is drawn with the
reparameterisation z = mean + std * eps (Section 2.4), and the decoder gives p(x|z), Bernoulli (Appendix C.1)
or Gaussian. The loss is the negative ELBO, -E_q[log p(x|z)] + beta * KL(q(z|x) || N(0, I)) (Section 2.3, Eq. 7
and 10), with the KL in closed form (Appendix B); `log_likelihood` is the importance-weighted bound of Burda et al.
(2015, https://arxiv.org/abs/1509.00519, Eq. 8).

What the file holds, in order:
- the outputs, and `DiagonalGaussian`, the posterior with the API of diffusers' `latent_dist`;
- tiling: a tiled pass runs a stage tile by tile, every tile normalised with the GroupNorm statistics of the whole
  image (`TileStatistics`, `TiledGroupNorm`, `run_tiled`), so tiles show no tone seams;
- half precision: a float16 step whose output overflows runs again in float32 (`overflow_safe`, `run_steps`);
- the two encoder/decoder pairs: the paper's one-hidden-layer MLP (Appendix C), and the ResNet of latent
  diffusion's autoencoder (Rombach et al., 2022, https://arxiv.org/abs/2112.10752, Section 3.1 and Appendix G)
  under the module names of diffusers' `AutoencoderKL`
  (https://huggingface.co/docs/diffusers/api/models/autoencoderkl), so its checkpoints load as they are;
- input checks, the likelihood terms and the importance weights, diffusers' tiling/slicing switches;
- `VAEPreTrainedModel` and `VAEModel`, whose methods put these together: encode, decode, sample, interpolate,
  log-likelihood and the ELBO.
"""

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .checks import Requirement, check_pixel_values, check_requirements
from .configuration_vae import VAEConfig
from .modeling_common import ModelNamesLayout, eager_attention_forward

LOGVAR_RANGE = (-30.0, 20.0)  # diffusers' clamp on the posterior log-variance
LOG_2PI = math.log(2 * math.pi)

Step = tuple[Callable[[torch.Tensor], torch.Tensor], list[nn.Module]]  # a step of a coder and the modules it runs


def require_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


def in_slices(
    function: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, slice_size: int | None
) -> torch.Tensor:
    """`function(batch)` run on `slice_size` items of dim 0 at a time (whole when None), the outputs concatenated:
    the activations of one slice at a time are alive."""
    if slice_size is None:
        return function(batch)
    require_count("slice_size", slice_size)
    return torch.cat([function(chunk) for chunk in batch.split(slice_size)])


class DiagonalGaussian:
    """q(z|x) = N(mean, exp(logvar)), with diffusers' `DiagonalGaussianDistribution` API (`sample`, `mode`,
    `mean`, `std`, `var`, `kl`), which its pipelines call on `vae.encode(x).latent_dist`."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean, self.logvar = mean, logvar
        self.std, self.var = torch.exp(0.5 * logvar), torch.exp(logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * eps, the reparameterisation trick (Section 2.4). eps is drawn on the generator's device
        and moved, as diffusers' `randn_tensor` does, so one seed gives the same draw whatever the model's device."""
        device = self.mean.device if generator is None else generator.device
        noise = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) in closed form (Appendix B), summed over all but the batch dimension."""
        return 0.5 * (self.mean.square() + self.var - 1.0 - self.logvar).flatten(1).sum(1)


@dataclass
class VAEEncoderOutput(ModelOutput):
    """latents: the posterior mean, or a draw from it (`sample_posterior=True`), scaled when `scaled=True`;
    `latent_dist` is the posterior as diffusers' pipelines read it."""

    latents: torch.Tensor | None = None
    latent_mean: torch.Tensor | None = None
    latent_logvar: torch.Tensor | None = None

    @property
    def latent_dist(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.latent_mean, self.latent_logvar)


@dataclass
class VAEDecoderOutput(ModelOutput):
    """sample: the decoded images (E[x|z]), under diffusers' name for them."""

    sample: torch.Tensor | None = None


@dataclass
class VAEOutput(ModelOutput):
    """loss = reconstruction_loss + beta * kl_loss, each averaged over the batch (nats per image);
    reconstruction is the decoder's mean image; latents the z the decoder saw."""

    loss: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    kl_loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    latent_mean: torch.Tensor | None = None
    latent_logvar: torch.Tensor | None = None
    latents: torch.Tensor | None = None


# ----------------------------------------------------------------------------------------------------------
# Tiling: GroupNorm with the statistics of the whole image


class StopTile(Exception):
    """Raised once the norm whose statistics a pass gathers has seen the tile: the rest is not needed."""


class TileStatistics:
    """GroupNorm statistics of the whole image, gathered tile by tile, one norm per pass.

    Tiles of a stage run one after another; `set_tile` tells which part of the tile is its own (the rest is halo
    shared with neighbours). A norm whose statistics are `known` normalises with them, so every tile shares one
    normalisation, as in the untiled model. The first norm met that is not known yet becomes the `target`: it adds
    its per-group sums over the tile's own pixels and stops the tile. After the pass the target is known, and
    the next pass goes one norm further, until a pass meets no unknown norm and its results are the output.
    """

    def __init__(self):
        self.known: dict[nn.GroupNorm, tuple[torch.Tensor, torch.Tensor]] = {}
        self.target, self.count, self.sums = None, 0, 0
        self.own, self.size = None, None

    def set_tile(self, own: tuple[int, int, int, int], size: tuple[int, int]) -> None:
        """own: (top, left, bottom, right) of the tile's own pixels inside the tile of `size` (height, width)."""
        self.own, self.size = own, size

    def normalize(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        if norm not in self.known:
            self.target = self.target or norm
            self.gather(norm, x)
            raise StopTile
        mean, var = self.known[norm]  # (batch, groups), float32
        per_channel = norm.num_channels // norm.num_groups
        scale = torch.rsqrt(var + norm.eps).repeat_interleave(per_channel, dim=1) * norm.weight  # (batch, channels)
        shift = norm.bias - mean.repeat_interleave(per_channel, dim=1) * scale
        # computed in float32 and cast back to x's dtype, as nn.GroupNorm does for half-precision input
        return torch.addcmul(shift[..., None, None], x.float(), scale[..., None, None]).to(x.dtype)

    def gather(self, norm: nn.GroupNorm, x: torch.Tensor) -> None:
        # the tile's own box, at this layer's resolution
        scale_h, scale_w = x.shape[-2] / self.size[0], x.shape[-1] / self.size[1]
        top, left, bottom, right = (round(v * s) for v, s in zip(self.own, (scale_h, scale_w, scale_h, scale_w)))
        own = x[..., top:bottom, left:right].float()  # half-precision sums would lose the image's statistics
        groups = own.reshape(own.shape[0], norm.num_groups, -1)  # (batch, groups, values of the group)
        var, mean = (t.double() for t in torch.var_mean(groups, dim=-1, correction=0))
        self.count += groups.shape[-1]
        self.sums = self.sums + groups.shape[-1] * torch.stack([mean, var + mean.square()])

    def finish_pass(self) -> bool:
        """Make the gathered norm known; False when the pass met no unknown norm (its results are final)."""
        if self.target is None:
            return False
        mean, second_moment = self.sums / self.count
        self.known[self.target] = (mean.float(), (second_moment - mean.square()).clamp_min(0).float())
        self.target, self.count, self.sums = None, 0, 0
        return True


class TiledGroupNorm(nn.GroupNorm):
    """nn.GroupNorm, unless a tiled pass has handed it `TileStatistics`."""

    def __init__(self, num_groups: int, num_channels: int, eps: float):
        super().__init__(num_groups, num_channels, eps=eps)
        self.tiling: TileStatistics | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tiling is None:
            return super().forward(x)
        return self.tiling.normalize(self, x)


@contextmanager
def tiled_norms(modules: list[nn.Module], statistics: TileStatistics) -> Iterator[None]:
    norms = [m for module in modules for m in module.modules() if isinstance(m, TiledGroupNorm)]
    for norm in norms:
        norm.tiling = statistics
    try:
        yield
    finally:
        for norm in norms:
            norm.tiling = None


def tile_boxes(height: int, width: int, tile: int, halo: int) -> Iterator[tuple[tuple, tuple]]:
    """(own, outer) boxes (top, left, bottom, right) that cover the image: own boxes tile it, outer ones add halo."""
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            outer = (max(top - halo, 0), max(left - halo, 0), min(bottom + halo, height), min(right + halo, width))
            yield (top, left, bottom, right), outer


def write_own(output: torch.Tensor | None, result: torch.Tensor, own: tuple, outer: tuple, size: tuple) -> torch.Tensor:
    """Copy the tile's own part of `result` (computed on the `outer` box) into `output` (allocated on first use);
    boxes are in input pixels, `result` may be at another resolution (the decoder doubles, the encoder halves)."""
    (top, left, bottom, right), (o_top, o_left, o_bottom, o_right) = own, outer
    ratio_h, ratio_w = result.shape[-2] / (o_bottom - o_top), result.shape[-1] / (o_right - o_left)
    if output is None:
        output = result.new_empty(*result.shape[:2], round(size[0] * ratio_h), round(size[1] * ratio_w))
    rows = slice(round(top * ratio_h), round(bottom * ratio_h))
    columns = slice(round(left * ratio_w), round(right * ratio_w))
    own_rows = slice(round((top - o_top) * ratio_h), round((bottom - o_top) * ratio_h))
    own_columns = slice(round((left - o_left) * ratio_w), round((right - o_left) * ratio_w))
    output[..., rows, columns] = result[..., own_rows, own_columns]
    return output


def run_tiled(
    stage: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    tile: int,
    halo: int,
    statistics: TileStatistics,
) -> torch.Tensor:
    """`stage(inputs)` computed tile by tile, each tile with `halo` pixels of context on every side (exact where
    the halo covers the stage's receptive field), one pass per GroupNorm of the stage to gather its statistics
    over the whole image and a last pass that writes the output."""
    height, width = inputs.shape[-2:]
    while True:
        output = None
        for own, outer in tile_boxes(height, width, tile, halo):
            (top, left, bottom, right), (o_top, o_left, o_bottom, o_right) = own, outer
            statistics.set_tile(
                (top - o_top, left - o_left, bottom - o_top, right - o_left), (o_bottom - o_top, o_right - o_left)
            )
            try:
                result = stage(inputs[..., o_top:o_bottom, o_left:o_right])
            except StopTile:
                continue
            output = write_own(output, result, own, outer, (height, width))
        if not statistics.finish_pass():
            return output


def run_tiled_stage(
    coder: nn.Module, index: int, tile: int, halo: int, statistics: TileStatistics, x: torch.Tensor
) -> torch.Tensor:
    """`coder.stage(index, x)` tile by tile. The stage's GroupNorm statistics are gathered afresh on every call, so
    that a call again in float32 after an overflow does not reuse those of the overflowed one."""
    modules = coder.stage_modules(index)
    for norm in [m for module in modules for m in module.modules() if m in statistics.known]:
        del statistics.known[norm]
    with tiled_norms(modules, statistics):
        return run_tiled(partial(coder.stage, index), x, tile, halo, statistics)


def tiled_steps(
    coder: nn.Module, statistics: TileStatistics, tile_sizes: list[int], tile_overlap: int | None
) -> list[Step]:
    """`coder`'s stages, each run tile by tile (`tile_sizes` in each stage's input pixels) sharing whole-image
    GroupNorm statistics; the halo is each stage's receptive radius unless `tile_overlap` overrides it."""
    return [
        (
            partial(run_tiled_stage, coder, index, tile, coder.stage_halo(index, tile_overlap), statistics),
            coder.stage_modules(index),
        )
        for index, tile in enumerate(tile_sizes)
    ]


def tiling_arguments(config: VAEConfig, tile_size: int | None, tile_overlap: int | None) -> tuple[int, int | None]:
    """The tile size and overlap of a tiled call: the arguments, or else the config's."""
    if config.architecture != "conv":
        raise ValueError(f"Tiling needs architecture='conv', got {config.architecture!r}.")
    tile_size = config.tile_size if tile_size is None else tile_size
    tile_overlap = config.tile_overlap if tile_overlap is None else tile_overlap
    require_count("tile_size", tile_size)
    if tile_overlap is not None:
        require_count("tile_overlap", tile_overlap, minimum=0)
    return tile_size, tile_overlap


# ----------------------------------------------------------------------------------------------------------
# Half precision: float32 where float16 overflows


class WithWeights(nn.Module):
    """Calls `function` with `modules` registered under it, so that `functional_call` can swap their weights."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], modules: list[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(modules)
        vars(self)["function"] = function  # a plain attribute: a module step must not register a second time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)


def in_float32(step: Callable[[torch.Tensor], torch.Tensor], modules: list[nn.Module], x: torch.Tensor):
    """step(x) in float32, the weights of `modules` upcast for the call only: the model keeps its dtype, and
    gradients flow back to its weights."""
    wrapper = WithWeights(step, modules)
    weights = {name: weight.float() for name, weight in wrapper.named_parameters()}
    return torch.func.functional_call(wrapper, weights, (x.float(),))


def overflow_safe(
    step: Callable[[torch.Tensor], torch.Tensor], modules: list[nn.Module], x: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """step(x) in the model's `dtype`, unless a float16 step overflows (a non-finite output from a finite input):
    then the step runs again in float32. Its output goes back to float16 where it fits the range, or stays
    float32, and the next step then runs in float32 too. Only the steps that overflow pay for float32; diffusers'
    `force_upcast` runs the whole VAE in float32 instead. bfloat16 has float32's range, and a compiled graph or a
    tensor on the meta device has no values to branch on: they run as they are."""
    if x.dtype == dtype:
        result = step(x)
        if dtype != torch.float16 or torch.compiler.is_compiling() or result.is_meta:
            return result
        if torch.isfinite(result).all() or not torch.isfinite(x).all():
            return result
        del result  # freed before the float32 step allocates its own
    result = in_float32(step, modules, x)
    return result.to(dtype) if result.abs().amax() <= torch.finfo(dtype).max else result


def run_steps(steps: list[Step], x: torch.Tensor) -> torch.Tensor:
    """The (step, its modules) in turn, each overflow-safe, the output in x's dtype."""
    dtype = x.dtype
    for step, modules in steps:
        x = overflow_safe(step, modules, x, dtype)
    return x.to(dtype)


# ----------------------------------------------------------------------------------------------------------
# The paper's MLP


class MLPEncoder(nn.Module):
    """x -> hidden -> (mean, log-variance), one tanh hidden layer (Appendix C.2)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.fc = nn.Linear(config.num_channels * config.image_size**2, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.moments = nn.Linear(config.hidden_size, 2 * config.latent_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.moments(self.act(self.fc(pixel_values.flatten(1))))  # (batch, 2 * latent_size)


class MLPDecoder(GradientCheckpointingLayer):
    """z -> hidden -> per-pixel parameter of p(x|z) (Bernoulli logits or Gaussian mean), Appendix C.1. The MLP's
    checkpointing layer (the encoder's input, the images, needs no gradient, which reentrant checkpointing cannot
    start from)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.image_shape = (config.num_channels, config.image_size, config.image_size)
        self.fc = nn.Linear(config.latent_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.out = nn.Linear(config.hidden_size, math.prod(self.image_shape))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc(latents))).unflatten(1, self.image_shape)  # (batch, C, H, W)


# ----------------------------------------------------------------------------------------------------------
# The convolutional ResNet (diffusers' AutoencoderKL layout and names)


def activate(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """act(x), in place for SiLU when no gradient is recorded: `x` is then a fresh norm output nobody else reads,
    and reusing it saves allocating (and faulting in) a full-size tensor per activation."""
    if isinstance(act, nn.SiLU) and not torch.is_grad_enabled():
        return F.silu(x, inplace=True)
    return act(x)


def group_norm(config: VAEConfig, channels: int) -> TiledGroupNorm:
    return TiledGroupNorm(config.norm_num_groups, channels, eps=config.norm_eps)


class ResnetBlock(GradientCheckpointingLayer):
    """x + conv(act(norm(conv(act(norm(x)))))), with a 1x1 conv on the shortcut when the width changes."""

    def __init__(self, config: VAEConfig, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(config, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(config, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.act = ACT2FN[config.hidden_act]
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(activate(self.act, self.norm1(x)))
        h = self.conv2(activate(self.act, self.norm2(h)))
        return h.add_(x if self.conv_shortcut is None else self.conv_shortcut(x))  # h: this block's own tensor


class Attention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, pre-GroupNorm, with a residual."""

    def __init__(self, config: VAEConfig, channels: int):
        super().__init__()
        self.config = config
        self.is_causal = False
        self.scaling = channels**-0.5
        self.group_norm = group_norm(config, channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])  # a list only for diffusers' key "to_out.0"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)  # (batch, pixels, channels)
        query, key, value = (proj(tokens).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))  # 1 head
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        output, _ = attention(self, query, key, value, None, scaling=self.scaling, dropout=0.0)
        output = self.to_out[0](output.reshape(batch, height * width, channels))
        return x + output.transpose(1, 2).reshape(batch, channels, height, width)


class MidBlock(nn.Module):
    """ResNet, attention (optional), ResNet at the lowest resolution."""

    def __init__(self, config: VAEConfig, channels: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(config, channels, channels) for _ in range(2)])
        self.attentions = nn.ModuleList([Attention(config, channels)] if config.mid_block_add_attention else [])

    def layers(self) -> list[nn.Module]:
        return [self.resnets[0], *self.attentions, self.resnets[1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_layers(self.layers(), x)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding right and bottom by one (LDM's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResolutionBlock(nn.Module):
    """`num_layers` ResNets at one resolution; the encoder's owner then down-samples (`downsamplers`), the
    decoder's up-samples (`upsamplers`), as diffusers' DownEncoderBlock2D / UpDecoderBlock2D."""

    def __init__(self, config: VAEConfig, in_channels: int, out_channels: int, num_layers: int, resample: str | None):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(config, in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)]
        )
        if resample == "down":
            self.downsamplers = nn.ModuleList([Downsample(out_channels)])
        elif resample == "up":
            self.upsamplers = nn.ModuleList([Upsample(out_channels)])


def layer_steps(layers: list[nn.Module]) -> list[Step]:
    return [(layer, [layer]) for layer in layers]


def run_layers(layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


class ConvEncoder(nn.Module):
    """conv_in, one block per entry of `block_out_channels` (halving the size but the last), the mid block, then
    norm, activation and conv_out to 2 x latent_channels moments.

    The blocks are the `stages` a tiled encode runs tile by tile (local operations and GroupNorm); stage
    boundaries sit at the low resolution, after each down-sampling. The mid block (attention) sees the whole image.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = config.block_out_channels
        self.conv_in = nn.Conv2d(config.num_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            ResolutionBlock(
                config,
                channels[max(i - 1, 0)],
                channels[i],
                config.layers_per_block,
                "down" if i < len(channels) - 1 else None,
            )
            for i in range(len(channels))
        )
        self.mid_block = MidBlock(config, channels[-1])
        self.conv_norm_out = group_norm(config, channels[-1])
        self.conv_act = ACT2FN[config.hidden_act]
        self.conv_out = nn.Conv2d(channels[-1], 2 * config.latent_channels, 3, padding=1)

    def stage_modules(self, index: int) -> list[nn.Module]:
        """The layers of stage `index` in order: conv_in (first stage), the ResNets, the down-sampling."""
        block = self.down_blocks[index]
        return ([self.conv_in] if index == 0 else []) + [*block.resnets, *getattr(block, "downsamplers", [])]

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return run_layers(self.stage_modules(index), x)

    def stage_halo(self, index: int, overlap: int | None = None) -> int:
        """Pixels of context a tile of stage `index` gets on each side: `overlap`, or else what it needs to be
        exact (its receptive radius); rounded up to even so that tiles keep the stride-2 grid."""
        block = self.down_blocks[index]
        reach = (index == 0) + 2 * len(block.resnets) + 2 * hasattr(block, "downsamplers")
        reach = reach if overlap is None else overlap
        return reach + reach % 2

    def out(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv_out(activate(self.conv_act, self.conv_norm_out(features)))

    def head_steps(self) -> list[Step]:
        """What follows the stages: the mid block (attention sees the whole image) and the output layers."""
        return [*layer_steps(self.mid_block.layers()), (self.out, [self.conv_norm_out, self.conv_out])]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        stages = [layer for index in range(len(self.down_blocks)) for layer in self.stage_modules(index)]
        return run_steps([*layer_steps(stages), *self.head_steps()], pixel_values)

    def tiled(self, pixel_values: torch.Tensor, tile: int, overlap: int | None) -> torch.Tensor:
        """`forward` with the stages run tile by tile, `tile` latent pixels wide: stage `index` halves its input
        `len(down_blocks) - 1 - index` more times before the latents, so its tiles are that many doublings wider."""
        factor = 2 ** (len(self.down_blocks) - 1)
        sizes = [tile * factor // 2**index for index in range(len(self.down_blocks))]
        return run_steps([*tiled_steps(self, TileStatistics(), sizes, overlap), *self.head_steps()], pixel_values)


class ConvDecoder(nn.Module):
    """conv_in, the mid block, one block per entry of `block_out_channels` in reverse (doubling the size but the
    last, layers_per_block + 1 ResNets each), then norm, activation and conv_out to image channels.

    After the mid block (attention, at the latent resolution) the `stages` run tile by tile in a tiled decode; stage
    boundaries sit at the low resolution, before each up-sampling.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = config.block_out_channels[::-1]
        self.conv_in = nn.Conv2d(config.latent_channels, channels[0], 3, padding=1)
        self.mid_block = MidBlock(config, channels[0])
        self.up_blocks = nn.ModuleList(
            ResolutionBlock(
                config,
                channels[max(i - 1, 0)],
                channels[i],
                config.layers_per_block + 1,
                "up" if i < len(channels) - 1 else None,
            )
            for i in range(len(channels))
        )
        self.conv_norm_out = group_norm(config, channels[-1])
        self.conv_act = ACT2FN[config.hidden_act]
        self.conv_out = nn.Conv2d(channels[-1], config.num_channels, 3, padding=1)

    def head_steps(self) -> list[Step]:
        """What precedes the stages: conv_in and the mid block (attention sees the whole image)."""
        return layer_steps([self.conv_in, *self.mid_block.layers()])

    def stage_layers(self, index: int) -> list[nn.Module]:
        """The layers of stage `index` in order: the previous block's up-sampling, then this block's ResNets."""
        upsampling = self.up_blocks[index - 1].upsamplers if index > 0 else []
        return [*upsampling, *self.up_blocks[index].resnets]

    def is_last(self, index: int) -> bool:
        return index == len(self.up_blocks) - 1

    def stage_modules(self, index: int) -> list[nn.Module]:
        return self.stage_layers(index) + ([self.conv_norm_out, self.conv_out] if self.is_last(index) else [])

    def out(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(activate(self.conv_act, self.conv_norm_out(x)))

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        x = run_layers(self.stage_layers(index), x)
        return self.out(x) if self.is_last(index) else x

    def stage_halo(self, index: int, overlap: int | None = None) -> int:
        """Pixels of stage `index`'s input a tile gets on each side: `overlap`, or else what it needs to be exact
        (its receptive radius)."""
        if overlap is not None:
            return overlap
        convs = (index > 0) + 2 * len(self.up_blocks[index].resnets) + (index == len(self.up_blocks) - 1)
        return math.ceil(convs / 2) if index > 0 else convs  # after the up-sampling, a conv reaches half a pixel

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        stages = [layer for index in range(len(self.up_blocks)) for layer in self.stage_layers(index)]
        output = (self.out, [self.conv_norm_out, self.conv_out])
        return run_steps([*self.head_steps(), *layer_steps(stages), output], latents)

    def tiled(self, latents: torch.Tensor, tile: int, overlap: int | None) -> torch.Tensor:
        """`forward` with the stages run tile by tile, `tile` latent pixels wide: stages 0 and 1 take the latent
        resolution (stage 1 starts with the first up-sampling), each later one twice its predecessor's."""
        sizes = [tile * 2 ** max(index - 1, 0) for index in range(len(self.up_blocks))]
        return run_steps([*self.head_steps(), *tiled_steps(self, TileStatistics(), sizes, overlap)], latents)


# ----------------------------------------------------------------------------------------------------------
# Input checks


def check_images(config: VAEConfig, pixel_values: torch.Tensor) -> None:
    """Images the encoder takes: floating point with the config's channels, at least one, the MLP's fixed size or
    the conv model's multiple of its down-sampling factor, pixels inside the likelihood's range."""
    check_pixel_values(pixel_values, config.num_channels)
    if pixel_values.numel() == 0:
        raise ValueError(f"`pixel_values` must hold at least one image, got shape {tuple(pixel_values.shape)}.")
    height, width = pixel_values.shape[-2:]
    if config.architecture == "mlp" and (height, width) != (config.image_size, config.image_size):
        raise ValueError(
            f"The MLP VAE takes {config.image_size}x{config.image_size} images (config.image_size), "
            f"got {height}x{width}."
        )
    factor = config.downsampling_factor
    if config.architecture == "conv" and (height % factor or width % factor):
        raise ValueError(
            f"Image height and width must be divisible by the down-sampling factor {factor} "
            f"(2 ** (len(block_out_channels) - 1)), got {height}x{width}."
        )
    if not torch.compiler.is_compiling():  # a branch on the values would break a compiled or exported graph
        check_image_range(config, pixel_values)


def check_image_range(config: VAEConfig, pixel_values: torch.Tensor) -> None:
    """Pixels inside the likelihood's range (see `check_requirements`)."""
    low, high = config.pixel_range
    lowest, highest = torch.aminmax(pixel_values)
    message = (
        f"The {config.likelihood} likelihood needs pixel values in [{low:g}, {high:g}] (the VAEImageProcessor "
        "maps images to this range)"
    )
    inside = (lowest >= low - 1e-4) & (highest <= high + 1e-4)
    check_requirements(Requirement(inside, message, lambda: f"values from {lowest:g} to {highest:g}"))


def latent_shape_for(config: VAEConfig, height: int | None = None, width: int | None = None) -> tuple[int, ...]:
    """Shape of one image's latent: (latent_size,) for the MLP, (channels, h, w) for the conv model."""
    if config.architecture == "mlp":
        return (config.latent_size,)
    factor = config.downsampling_factor
    return (
        config.latent_channels,
        (height or config.image_size) // factor,
        (width or height or config.image_size) // factor,
    )


def check_latent_shape(expected: tuple[int, ...], latents: torch.Tensor) -> None:
    """A batch of latents of one image's `expected` shape: its rank and channels (the size may differ)."""
    if latents.ndim != len(expected) + 1 or latents.shape[1] != expected[0]:
        names = "(batch, latent_size)" if len(expected) == 1 else "(batch, latent_channels, height, width)"
        raise ValueError(f"`latents` must have shape {names} with {expected[0]} at dim 1, got {tuple(latents.shape)}.")
    if latents.numel() == 0:
        raise ValueError(f"`latents` must hold at least one latent, got shape {tuple(latents.shape)}.")


# ----------------------------------------------------------------------------------------------------------
# Likelihoods: p(x|z), the prior and the importance-weighted bound


def log_normal(standardized: torch.Tensor, logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
    """log N(x; mu, exp(logvar)) of every element, from its standardized value (x - mu) / std."""
    return -0.5 * (standardized.square() + logvar + LOG_2PI)


def likelihood_mean(config: VAEConfig, decoder_output: torch.Tensor) -> torch.Tensor:
    """E[x|z]: the Bernoulli probabilities, or the Gaussian mean."""
    return torch.sigmoid(decoder_output) if config.likelihood == "bernoulli" else decoder_output


def likelihood_nll(config: VAEConfig, pixel_values: torch.Tensor, decoder_output: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) in nats, summed over pixels: shape (batch,). Bernoulli on logits (Appendix C.1), or Gaussian
    of the config's fixed std around the decoder's mean."""
    if config.likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(
            decoder_output, pixel_values.to(decoder_output.dtype), reduction="none"
        )
    else:
        std = config.gaussian_std
        nll = -log_normal((pixel_values - decoder_output) / std, 2 * math.log(std))
    return nll.flatten(1).sum(1)


def log_importance_weights(
    nll: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    posterior: DiagonalGaussian,
    noise: torch.Tensor,
) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) at z = mean + std * noise, noise (draws, batch, *latent): (draws, batch).
    `nll(images, latents)` is -log p(x|z) of a flat batch."""
    draws, batch = noise.shape[:2]
    latents = posterior.mean + posterior.std * noise  # (draws, batch, *latent)
    # (draws, batch, ...) -> (draws * batch, ...): the decoder takes one flat batch, each image once per draw
    targets = pixel_values.expand(draws, *pixel_values.shape).flatten(0, 1)
    log_p_x_given_z = -nll(targets, latents.flatten(0, 1)).view(draws, batch)
    log_p_z = log_normal(latents).flatten(2).sum(-1)
    log_q_z = (
        log_normal(noise, posterior.logvar).flatten(2).sum(-1)
    )  # under q(z|x), z's standardized value is the noise
    return log_p_x_given_z + log_p_z - log_q_z


def importance_weighted_bound(
    nll: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    posterior: DiagonalGaussian,
    num_samples: int,
    generator: torch.Generator | None,
    chunk_size: int,
) -> torch.Tensor:
    """log (1/k) sum_i p(x, z_i) / q(z_i|x) over k = `num_samples` draws z_i ~ q(z|x), shape (batch,) (Burda et
    al., Eq. 8); `chunk_size` draws go through the decoder at a time."""
    mean = posterior.mean
    counts = [chunk_size] * (num_samples // chunk_size) + [num_samples % chunk_size]
    log_weights = []
    for count in filter(None, counts):
        noise = torch.randn((count, *mean.shape), generator=generator, device=mean.device, dtype=mean.dtype)
        log_weights.append(log_importance_weights(nll, pixel_values, posterior, noise))
    return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(num_samples)


# ----------------------------------------------------------------------------------------------------------
# diffusers' AutoencoderKL API, which its pipelines call


class DiffusersSwitches:
    """diffusers' `enable_tiling` / `enable_slicing` switches: they set the defaults of a call's `tiled` and
    `slice_size` (off; slicing runs one image at a time)."""

    def enable_tiling(self, use_tiling: bool = True) -> None:
        self.tile_settings(None, None)  # refuses the MLP
        self.use_tiling = use_tiling

    def disable_tiling(self) -> None:
        self.use_tiling = False

    def enable_slicing(self) -> None:
        self.use_slicing = True

    def disable_slicing(self) -> None:
        self.use_slicing = False

    def call_settings(self, tiled: bool | None, slice_size: int | None) -> tuple[bool, int | None]:
        """`tiled` and `slice_size` of a call, or else what enable_tiling / enable_slicing set (one image at a time)."""
        tiled = self.use_tiling if tiled is None else tiled
        return tiled, 1 if slice_size is None and self.use_slicing else slice_size


# ----------------------------------------------------------------------------------------------------------
# The model


class VAEPreTrainedModel(ModelNamesLayout):
    config_class = VAEConfig
    base_model_prefix = "vae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ResnetBlock", "Attention"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True

    def _init_weights(self, module):
        """The paper's N(0, 0.01) for the MLP (Section 5); PyTorch's default (Kaiming uniform) for convolutions."""
        if isinstance(module, nn.Conv2d):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            fan_in = module.weight[0].numel()
            init.uniform_(module.bias, -(fan_in**-0.5), fan_in**-0.5)
        elif isinstance(module, nn.Linear) and self.config.architecture == "conv":
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            init.uniform_(module.bias, -(module.in_features**-0.5), module.in_features**-0.5)
        else:
            super()._init_weights(module)


class VAEModel(DiffusersSwitches, VAEPreTrainedModel):
    """Encoder -> (mean, log-variance) -> reparameterised z -> decoder; `forward` returns the negative ELBO.

    Pixel values lie in [0, 1] for the Bernoulli likelihood and in [-1, 1] (diffusers' range) for the Gaussian.
    """

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        conv = config.architecture == "conv"
        self.encoder = ConvEncoder(config) if conv else MLPEncoder(config)
        self.decoder = ConvDecoder(config) if conv else MLPDecoder(config)
        moments = 2 * config.latent_channels
        self.quant_conv = nn.Conv2d(moments, moments, 1) if conv and config.use_quant_conv else None
        self.post_quant_conv = (
            nn.Conv2d(config.latent_channels, config.latent_channels, 1)
            if conv and config.use_post_quant_conv
            else None
        )
        self.use_tiling, self.use_slicing = False, False  # the defaults of encode/decode, as in diffusers
        self.post_init()

    # -- input checks and tiling settings (the module functions above, on this model's config) -----------

    def check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        check_images(self.config, pixel_values)

    def check_pixel_range(self, pixel_values: torch.Tensor) -> None:
        check_image_range(self.config, pixel_values)

    def latent_shape(self, height: int | None = None, width: int | None = None) -> tuple[int, ...]:
        return latent_shape_for(self.config, height, width)

    def check_latents(self, latents: torch.Tensor) -> None:
        check_latent_shape(self.latent_shape(), latents)

    def tile_settings(self, tile_size: int | None, tile_overlap: int | None) -> tuple[int, int | None]:
        return tiling_arguments(self.config, tile_size, tile_overlap)

    tiled_steps = staticmethod(tiled_steps)

    # -- the encoder's output, the decoder's and p(x|z) --------------------------------------------------

    def moments(
        self, pixel_values: torch.Tensor, tiled: bool = False, tile_size=None, tile_overlap=None
    ) -> torch.Tensor:
        """The encoder's output: mean and log-variance stacked along dim 1."""
        pixel_values = pixel_values.to(self.dtype)
        if tiled:
            tile, overlap = self.tile_settings(tile_size, tile_overlap)  # first: the MLP has no tiled pass
            moments = self.encoder.tiled(pixel_values, tile, overlap)
        else:
            moments = self.encoder(pixel_values)
        return moments if self.quant_conv is None else self.quant_conv(moments)

    def decoder_output(
        self, latents: torch.Tensor, tiled: bool = False, tile_size=None, tile_overlap=None
    ) -> torch.Tensor:
        """The per-pixel parameter of p(x|z): Bernoulli logits or the Gaussian mean."""
        latents = latents.to(self.dtype)
        if self.post_quant_conv is not None:
            latents = self.post_quant_conv(latents)
        if not tiled:
            return self.decoder(latents)
        tile, overlap = self.tile_settings(tile_size, tile_overlap)  # first: the MLP has no tiled pass
        return self.decoder.tiled(latents, tile, overlap)

    def mean_image(self, decoder_output: torch.Tensor) -> torch.Tensor:
        return likelihood_mean(self.config, decoder_output)

    def negative_log_likelihood(self, pixel_values: torch.Tensor, decoder_output: torch.Tensor) -> torch.Tensor:
        return likelihood_nll(self.config, pixel_values, decoder_output)

    # -- latents, images and the ELBO --------------------------------------------------------------------

    def scale_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(z - shift_factor) * scaling_factor: the latent scale a diffusion model is trained on."""
        return (latents - (self.config.shift_factor or 0.0)) * self.config.scaling_factor

    def unscale_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents / self.config.scaling_factor + (self.config.shift_factor or 0.0)

    def encode(
        self,
        pixel_values: torch.Tensor,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
        scaled: bool = False,
        tiled: bool | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        slice_size: int | None = None,
    ) -> VAEEncoderOutput:
        """q(z|x). `scaled` applies scaling_factor/shift_factor to `latents`; `tiled` encodes tile by tile
        (`tile_size` in latent pixels, `tile_overlap` in pixels of each tiled stage's input; both default to the
        config's); `slice_size` images at a time. `tiled` and `slice_size` default to `enable_tiling()` /
        `enable_slicing()`'s settings (off)."""
        self.check_pixel_values(pixel_values)
        tiled, slice_size = self.call_settings(tiled, slice_size)
        moments = in_slices(
            lambda images: self.moments(images, tiled, tile_size, tile_overlap), pixel_values, slice_size
        )
        mean, logvar = moments.chunk(2, dim=1)  # (batch, 2 * latent, ...) -> 2 x (batch, latent, ...)
        logvar = logvar.clamp(*LOGVAR_RANGE)
        latents = DiagonalGaussian(mean, logvar).sample(generator) if sample_posterior else mean
        if scaled:
            latents = self.scale_latents(latents)
        return VAEEncoderOutput(latents=latents, latent_mean=mean, latent_logvar=logvar)

    def decode(
        self,
        latents: torch.Tensor,
        scaled: bool = False,
        tiled: bool | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        slice_size: int | None = None,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> VAEDecoderOutput | tuple[torch.Tensor]:
        """E[x|z] as images in the pixel range; `scaled=True` takes latents from `encode(..., scaled=True)`.

        Returns what diffusers' `AutoencoderKL.decode` returns, so that its pipelines can call this one: a
        `VAEDecoderOutput` with the images in `.sample` (`return_dict=True`), or the one-tuple `(images,)`
        (`return_dict=False`). `generator` is accepted because those pipelines pass it to every decoder: this one
        is deterministic."""
        self.check_latents(latents)
        tiled, slice_size = self.call_settings(tiled, slice_size)
        if scaled:
            latents = self.unscale_latents(latents)
        decoded = in_slices(
            lambda chunk: self.decoder_output(chunk, tiled, tile_size, tile_overlap), latents, slice_size
        )
        images = self.mean_image(decoded)
        return VAEDecoderOutput(sample=images) if return_dict else (images,)

    def reconstruct(self, pixel_values: torch.Tensor, sample_posterior: bool = False, **tiling) -> torch.Tensor:
        """decode(encode(x)): through the posterior mean, or a draw from the posterior."""
        latents = self.encode(pixel_values, sample_posterior=sample_posterior, **tiling).latents
        return self.decode(latents, **tiling).sample

    def sample(
        self,
        num_samples: int,
        generator: torch.Generator | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> torch.Tensor:
        """Images decoded from z ~ N(0, I); height/width (conv model) default to config.image_size."""
        require_count("num_samples", num_samples)
        shape = (num_samples, *self.latent_shape(height, width))
        latents = torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)
        return self.decode(latents).sample

    def interpolate(self, image1: torch.Tensor, image2: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decoded images along the straight line between the posterior means of two images: (steps, C, H, W)."""
        if steps < 2:
            raise ValueError(f"`steps` must be >= 2 (both end points), got {steps}.")
        pair = torch.stack([image.reshape(image.shape[-3:]) for image in (image1, image2)])  # (2, C, H, W)
        start, end = self.encode(pair).latent_mean
        # (steps,) -> (steps, 1, ...): one weight per point, broadcast over a latent
        weights = torch.linspace(0, 1, steps, device=start.device, dtype=start.dtype).view(-1, *[1] * start.ndim)
        return self.decode(torch.lerp(start, end, weights)).sample

    def log_likelihood(
        self,
        pixel_values: torch.Tensor,
        num_samples: int = 100,
        generator: torch.Generator | None = None,
        chunk_size: int = 50,
    ) -> torch.Tensor:
        """Importance-weighted estimate of log p(x) in nats, shape (batch,) (Burda et al., Eq. 8):
        log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x). Its expectation is the ELBO at k=1 and rises with k;
        `chunk_size` draws are decoded at a time."""
        require_count("num_samples", num_samples)
        require_count("chunk_size", chunk_size)

        def nll(images: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            return self.negative_log_likelihood(images, self.decoder_output(latents))

        posterior = self.encode(pixel_values).latent_dist
        return importance_weighted_bound(nll, pixel_values, posterior, num_samples, generator, chunk_size)

    def forward(
        self,
        pixel_values: torch.Tensor,
        sample_posterior: bool = True,
        generator: torch.Generator | None = None,
        return_loss: bool = True,
    ) -> VAEOutput:
        """The negative ELBO with one reparameterised draw (Eq. 7 and 10 with L = 1). `return_loss` is there so
        that `Trainer` computes the evaluation loss of a model without labels."""
        posterior = self.encode(pixel_values, sample_posterior=sample_posterior, generator=generator)
        decoded = self.decoder_output(posterior.latents)
        reconstruction_loss = self.negative_log_likelihood(pixel_values, decoded)
        kl = posterior.latent_dist.kl()
        loss = (reconstruction_loss + self.config.beta * kl).mean() if return_loss else None
        return VAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss.mean(),
            kl_loss=kl.mean(),
            reconstruction=self.mean_image(decoded),
            latent_mean=posterior.latent_mean,
            latent_logvar=posterior.latent_logvar,
            latents=posterior.latents,
        )


__all__ = ["VAEModel", "VAEPreTrainedModel"]
