"""VAE configuration: the variational auto-encoder of "Auto-Encoding Variational Bayes" (Kingma & Welling, 2013).

Two architectures: the paper's MLP (one hidden layer in encoder and decoder, Appendix C) and a convolutional
ResNet encoder/decoder whose fields can express diffusers' `AutoencoderKL` (the Stable Diffusion VAE; field
names are diffusers' own: block_out_channels, layers_per_block, norm_num_groups, mid_block_add_attention,
latent_channels, scaling_factor, shift_factor, use_quant_conv, use_post_quant_conv).
Paper: https://arxiv.org/abs/1312.6114 (Section 2.4 and Appendix C).
"""

from huggingface_hub.dataclasses import strict

from .checks import require_activation, require_divisible, require_finite, require_non_negative, require_positive
from .configuration_utils import HubformersConfig

AUTO_MAP = {
    "AutoConfig": "configuration_vae.VAEConfig",
    "AutoModel": "modeling_vae.VAEModel",
}

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
# The range `pixel_values` must lie in under each likelihood: Bernoulli probabilities, or diffusers' [-1, 1].
PIXEL_RANGES = {"bernoulli": (0.0, 1.0), "gaussian": (-1.0, 1.0)}


def require_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")


@strict(accept_kwargs=True)
class VAEConfig(HubformersConfig):
    r"""
    Configuration of a hubformers VAE. The defaults give the paper's MNIST model (28x28 binary digits, 500 hidden
    units, 20 latent dimensions, Bernoulli decoder); `architecture="conv"` with `num_channels=3` gives the
    Stable Diffusion VAE's shape.

    Args:
        architecture: "mlp" (the paper's) or "conv" (ResNet encoder/decoder as diffusers' AutoencoderKL).
        num_channels / image_size: input channels and side; the MLP needs the size, the conv model only uses it as
            the default size of `sample()`.
        likelihood: "bernoulli" (pixels in [0, 1], decoder gives logits) or "gaussian" (pixels in [-1, 1],
            decoder gives the mean, fixed standard deviation `gaussian_std`).
        beta: weight of the KL term in the loss (beta-VAE; 1 is the ELBO).
        hidden_act: activation; None picks the paper's tanh for the MLP and diffusers' silu for the conv model.
        hidden_size / latent_size: MLP hidden width and latent dimension.
        block_out_channels / layers_per_block / norm_num_groups / norm_eps / mid_block_add_attention /
            latent_channels / use_quant_conv / use_post_quant_conv: the conv model, as in diffusers.
        scaling_factor / shift_factor: latents for a diffusion model are (z - shift) * scale; applied by
            `encode(..., scaled=True)` and undone by `decode(..., scaled=True)`.
        force_upcast / latents_mean / latents_std: fields of diffusers' AutoencoderKL config that its pipelines read:
            whether to run the VAE in float32 when the pipeline runs in float16 (not needed here: the decoder
            computes in float32 just the stages that overflow float16), and per-channel latent statistics.
        tile_size: tiled encode/decode: the side of a tile's own region, in latent pixels.
        tile_overlap: the halo of context around each tile, in pixels of the tiled stage's input; None takes each
            stage's receptive radius, which makes tiles exact.
    """

    model_type = "hubformers_vae"

    architecture: str = "mlp"
    num_channels: int = 1
    image_size: int = 28
    likelihood: str = "bernoulli"
    beta: float | int = 1.0
    gaussian_std: float | int = 0.1
    hidden_act: str | None = None
    initializer_range: float | int = 0.01
    hidden_size: int = 500
    latent_size: int = 20
    block_out_channels: list[int] | tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    norm_eps: float | int = 1e-6
    mid_block_add_attention: bool = True
    latent_channels: int = 4
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    scaling_factor: float | int = 1.0
    shift_factor: float | int | None = None
    force_upcast: bool = False
    latents_mean: list[float] | tuple[float, ...] | None = None
    latents_std: list[float] | tuple[float, ...] | None = None
    tile_size: int = 16
    tile_overlap: int | None = None

    def __post_init__(self, **kwargs):
        kwargs = self.read_extra_kwargs(kwargs)
        require_choice("architecture", self.architecture, ARCHITECTURES)
        require_choice("likelihood", self.likelihood, LIKELIHOODS)
        self.hidden_act = self.hidden_act or ("tanh" if self.architecture == "mlp" else "silu")
        self.block_out_channels = list(self.block_out_channels)
        require_activation("hidden_act", self.hidden_act)
        require_positive(
            num_channels=self.num_channels,
            image_size=self.image_size,
            gaussian_std=self.gaussian_std,
            hidden_size=self.hidden_size,
            latent_size=self.latent_size,
            block_out_channels=self.block_out_channels,
            layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups,
            norm_eps=self.norm_eps,
            latent_channels=self.latent_channels,
            scaling_factor=self.scaling_factor,
            tile_size=self.tile_size,
            initializer_range=self.initializer_range,
        )
        require_non_negative(beta=self.beta)
        if self.tile_overlap is not None:
            require_non_negative(tile_overlap=self.tile_overlap)
        if self.shift_factor is not None:
            require_finite(shift_factor=self.shift_factor)
        for name in ("latents_mean", "latents_std"):
            values = getattr(self, name)
            if values is not None and len(values) != self.latent_channels:
                raise ValueError(
                    f"`{name}` needs one value per latent channel ({self.latent_channels}), got {len(values)}."
                )
        if self.latents_mean is not None:
            require_finite(**{f"latents_mean[{channel}]": value for channel, value in enumerate(self.latents_mean)})
        if self.latents_std is not None:
            require_positive(latents_std=list(self.latents_std))
        if self.architecture == "conv":
            for channels in self.block_out_channels:
                require_divisible("block_out_channels", channels, "norm_num_groups", self.norm_num_groups)
            require_divisible("image_size", self.image_size, "downsampling_factor", self.downsampling_factor)
        super().__post_init__(**kwargs)
        self.auto_map = {**AUTO_MAP, **(getattr(self, "auto_map", None) or {})}

    @property
    def downsampling_factor(self) -> int:
        """Image pixels per latent pixel along each side (conv model: one halving per block but the last)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def pixel_range(self) -> tuple[float, float]:
        return PIXEL_RANGES[self.likelihood]


__all__ = ["VAEConfig"]
