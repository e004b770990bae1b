"""VAE: parity with diffusers' AutoencoderKL on the same weights, the ELBO and its parts, the importance-weighted
log-likelihood, sampling/interpolation, scaling, exact seam-free tiling, batch slicing, the image processor,
the Auto classes and clear errors on bad input."""

import PIL.Image
import pytest
import torch
from conftest import max_abs_diff
from diffusers import AutoencoderKL
from transformers import AutoConfig, AutoImageProcessor, AutoModel

import hubformers
from hubformers import modeling_vae

TINY_CONV = dict(
    architecture="conv",
    num_channels=3,
    image_size=16,
    likelihood="gaussian",
    block_out_channels=[8, 16, 16],
    layers_per_block=1,
    norm_num_groups=4,
    latent_channels=4,
)
TINY_MLP = dict(architecture="mlp", num_channels=1, image_size=8, hidden_size=32, latent_size=3)
TOL = 1e-5


def diffusers_reference(config: hubformers.VAEConfig, **overrides) -> AutoencoderKL:
    blocks = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=config.num_channels,
        out_channels=config.num_channels,
        down_block_types=["DownEncoderBlock2D"] * blocks,
        up_block_types=["UpDecoderBlock2D"] * blocks,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        norm_num_groups=config.norm_num_groups,
        latent_channels=config.latent_channels,
        mid_block_add_attention=config.mid_block_add_attention,
        use_quant_conv=config.use_quant_conv,
        use_post_quant_conv=config.use_post_quant_conv,
        **overrides,
    ).eval()


def conv_pair(**overrides):
    """Our conv VAE and diffusers' AutoencoderKL with the same random weights (loaded under the same names)."""
    ours = hubformers.VAEModel(hubformers.VAEConfig(**{**TINY_CONV, **overrides})).eval()
    reference = diffusers_reference(ours.config)
    reference.load_state_dict(ours.state_dict(), strict=True)
    return ours, reference


def images(batch=2, channels=3, height=16, width=24, low=-1.0):
    return torch.rand(batch, channels, height, width) * (1.0 - low) + low


@pytest.mark.parametrize(
    "overrides",
    [{}, {"mid_block_add_attention": False}, {"use_quant_conv": False, "use_post_quant_conv": False}],
    ids=["attention", "no-attention", "no-quant-conv"],
)
def test_conv_matches_diffusers(overrides):
    ours, reference = conv_pair(**overrides)
    x = images()
    with torch.no_grad():
        expected = reference.encode(x).latent_dist
        got = ours.encode(x)
        assert max_abs_diff(expected.mean, got.latent_mean) <= TOL
        assert max_abs_diff(expected.logvar, got.latent_logvar) <= TOL
        assert max_abs_diff(reference.decode(expected.mean).sample, ours.decode(got.latents).sample) <= TOL
        assert max_abs_diff(reference(x).sample, ours.reconstruct(x)) <= TOL


def test_posterior_sample_matches_diffusers_with_the_same_generator():
    ours, reference = conv_pair()
    x = images()
    with torch.no_grad():
        expected = reference.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(3))
        got = ours.encode(x, sample_posterior=True, generator=torch.Generator().manual_seed(3)).latents
    assert max_abs_diff(expected, got) <= TOL


def test_scaling_and_shift_are_applied_by_encode_and_decode():
    ours, _ = conv_pair(scaling_factor=0.25, shift_factor=0.5)
    x = images()
    with torch.no_grad():
        plain, scaled = ours.encode(x).latents, ours.encode(x, scaled=True).latents
        assert max_abs_diff(scaled, (plain - 0.5) * 0.25) <= TOL
        assert max_abs_diff(ours.decode(scaled, scaled=True).sample, ours.decode(plain).sample) <= TOL


def test_forward_returns_the_negative_elbo_and_its_parts():
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_MLP, beta=0.5)).eval()
    x = images(4, 1, 8, 8, low=0.0)
    out = model(x, generator=torch.Generator().manual_seed(0))
    mean, logvar = out.latent_mean, out.latent_logvar
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(1)
    # the KL in closed form against a Monte-Carlo estimate of E_q[log q(z|x) - log p(z)]
    draws = mean + (0.5 * logvar).exp() * torch.randn(20000, *mean.shape)
    log_q = torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(draws).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(draws).sum(-1)
    assert torch.allclose((log_q - log_p).mean(0), kl, atol=0.05)
    logits = model.decoder_output(out.latents)
    bernoulli = -torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(x).flatten(1).sum(1)
    assert abs(out.reconstruction_loss.item() - bernoulli.mean().item()) <= 1e-4
    assert abs(out.kl_loss.item() - kl.mean().item()) <= 1e-5
    assert abs(out.loss.item() - (bernoulli + 0.5 * kl).mean().item()) <= 1e-4
    assert torch.equal(out.reconstruction, torch.sigmoid(logits))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_gaussian_likelihood_in_nats():
    model = hubformers.VAEModel(hubformers.VAEConfig(**{**TINY_MLP, "likelihood": "gaussian", "gaussian_std": 0.3}))
    x = images(3, 1, 8, 8)
    decoded = torch.randn(3, 1, 8, 8)
    expected = -torch.distributions.Normal(decoded, 0.3).log_prob(x).flatten(1).sum(1)
    assert max_abs_diff(model.negative_log_likelihood(x, decoded), expected) <= 1e-4


def test_importance_weighted_log_likelihood_is_the_elbo_at_one_sample_and_rises_with_more():
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_MLP)).eval()
    # a posterior far from the prior, as after training, so the bound is loose at k=1
    with torch.no_grad():
        model.encoder.moments.bias[:3] = 1.5
    x = (torch.rand(2, 1, 8, 8) > 0.5).float()
    draws = 4000
    repeated = x.repeat(draws, 1, 1, 1)  # (draws * 2, 1, 8, 8)
    with torch.no_grad():
        iw1 = model.log_likelihood(repeated, 1).view(draws, 2)
        posterior = model.encode(repeated, sample_posterior=True)
        mean, logvar = posterior.latent_mean, posterior.latent_logvar
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(1)
        elbo = -(model.negative_log_likelihood(repeated, model.decoder_output(posterior.latents)) + kl).view(draws, 2)
        iw100 = model.log_likelihood(x.repeat(20, 1, 1, 1), 100).view(20, 2)
    standard_error = ((iw1.var(0) + elbo.var(0)) / draws).sqrt().max().item()
    assert (iw1.mean(0) - elbo.mean(0)).abs().max().item() <= 4 * standard_error
    assert (iw100.mean(0) > iw1.mean(0) + 10 * standard_error).all()


def test_sample_reconstruct_and_interpolate():
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV)).eval()
    with torch.no_grad():
        first = model.sample(3, generator=torch.Generator().manual_seed(1))
        again = model.sample(3, generator=torch.Generator().manual_seed(1))
        other = model.sample(2, generator=torch.Generator().manual_seed(2), height=32, width=8)
        x = images(2, 3, 16, 16)
        path = model.interpolate(x[0], x[1], steps=5)
        ends = model.decode(model.encode(x).latent_mean).sample
    assert first.shape == (3, 3, 16, 16) and torch.equal(first, again)
    assert other.shape == (2, 3, 32, 8)
    assert path.shape == (5, 3, 16, 16)
    assert max_abs_diff(path[0], ends[0]) <= TOL and max_abs_diff(path[-1], ends[1]) <= TOL


def test_batch_slicing_gives_the_same_result():
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV)).eval()
    x = images(5)
    with torch.no_grad():
        latents = model.encode(x).latents
        assert max_abs_diff(model.encode(x, slice_size=2).latents, latents) <= TOL
        assert max_abs_diff(model.decode(latents, slice_size=2).sample, model.decode(latents).sample) <= TOL


def test_tiled_decode_and_encode_match_untiled():
    """Tiles share the GroupNorm statistics of the whole image, and each sees its stage's receptive field: tiled ==
    untiled up to rounding (diffusers' seams are measured in test_vae_scripts)."""
    model = hubformers.VAEModel(hubformers.VAEConfig(**{**TINY_CONV, "block_out_channels": [8, 16]})).eval()
    latents = torch.randn(1, 4, 20, 14)
    x = images(1, 3, 36, 28)
    with torch.no_grad():
        untiled = model.decode(latents).sample
        assert max_abs_diff(model.decode(latents, tiled=True, tile_size=6).sample, untiled) <= 1e-4 * (
            untiled.max() - untiled.min()
        )
        assert max_abs_diff(model.encode(x, tiled=True, tile_size=6).latent_mean, model.encode(x).latent_mean) <= 1e-4


def test_tiled_paths_take_their_overlap_from_the_config(monkeypatch):
    """config.tile_overlap is the halo of every tiled stage unless the call gives one: a halo smaller than the
    receptive field shows seams, one that covers it is exact again."""
    settings = {**TINY_CONV, "block_out_channels": [8, 16]}
    default = hubformers.VAEModel(hubformers.VAEConfig(**settings)).eval()
    latents, x = torch.randn(1, 4, 12, 8), images(1, 3, 24, 16)
    halos = []
    original_run_tiled = modeling_vae.run_tiled
    monkeypatch.setattr(modeling_vae, "run_tiled", lambda *args: halos.append(args[3]) or original_run_tiled(*args))
    with torch.no_grad():
        untiled, untiled_mean = default.decode(latents).sample, default.encode(x).latent_mean
        tolerance = 1e-4 * (untiled.max() - untiled.min())
        for overlap, exact in [(1, False), (8, True)]:
            model = hubformers.VAEModel(hubformers.VAEConfig(**settings, tile_overlap=overlap)).eval()
            model.load_state_dict(default.state_dict())
            halos.clear()
            decoded = model.decode(latents, tiled=True, tile_size=4).sample
            mean = model.encode(x, tiled=True, tile_size=4).latent_mean
            even = overlap + overlap % 2  # the encoder's halos keep the stride-2 grid
            assert halos == [overlap, overlap, even, even]
            assert (max_abs_diff(decoded, untiled) <= tolerance) == exact, overlap
            assert (max_abs_diff(mean, untiled_mean) <= 1e-4) == exact, overlap
            assert torch.equal(decoded, default.decode(latents, tiled=True, tile_size=4, tile_overlap=overlap).sample)
        halos.clear()
        model.decode(latents, tiled=True, tile_size=4, tile_overlap=0)  # the call's overlap wins over the config's
        assert halos == [0, 0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_tiled_decode_and_encode_in_half_precision(dtype):
    """Tiled matches untiled in the same dtype, within a few units of the dtype's rounding."""
    model = hubformers.VAEModel(hubformers.VAEConfig(**{**TINY_CONV, "block_out_channels": [8, 16]}))
    model = model.eval().to(dtype)
    latents, x = torch.randn(1, 4, 8, 8, dtype=dtype), images(1, 3, 16, 16).to(dtype)
    with torch.no_grad():
        untiled, tiled = model.decode(latents).sample, model.decode(latents, tiled=True, tile_size=4).sample
        untiled_mean = model.encode(x).latent_mean
        tiled_mean = model.encode(x, tiled=True, tile_size=4).latent_mean
    eps = torch.finfo(dtype).eps
    assert tiled.dtype == tiled_mean.dtype == dtype
    assert torch.isfinite(tiled).all() and torch.isfinite(tiled_mean).all()
    assert max_abs_diff(tiled.float(), untiled.float()) <= 8 * eps * (untiled.max() - untiled.min()).item()
    assert max_abs_diff(tiled_mean.float(), untiled_mean.float()) <= 8 * eps * untiled_mean.abs().max().item()


def test_image_processor_round_trip():
    processor = hubformers.VAEImageProcessor.for_config(hubformers.VAEConfig(**TINY_CONV))
    picture = (torch.rand(3, 16, 16) * 255).to(torch.uint8)
    pixel_values = processor(picture, return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, 16, 16)
    assert pixel_values.min() >= -1 and pixel_values.max() <= 1
    back = processor.postprocess(pixel_values)[0]
    assert back.size == (16, 16) and back.mode == "RGB"
    assert (torch.tensor(list(back.getdata())).T.reshape(3, 16, 16) - picture.long()).abs().max() <= 1

    gray = hubformers.VAEImageProcessorPil.for_config(hubformers.VAEConfig(**TINY_MLP))
    digit = PIL.Image.fromarray(torch.randint(0, 256, (8, 8), dtype=torch.uint8).numpy(), mode="L")
    digits = gray(digit, return_tensors="pt").pixel_values
    assert digits.shape == (1, 1, 8, 8) and digits.min() >= 0 and digits.max() <= 1
    assert gray.postprocess(digits)[0].mode == "L"


def test_auto_classes_and_save_load(tmp_path):
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV)).eval()
    model.save_pretrained(tmp_path)
    hubformers.VAEImageProcessor.for_config(model.config).save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), hubformers.VAEConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, hubformers.VAEModel)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), hubformers.VAEImageProcessor)
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"architecture": "transformer"}, "architecture"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"beta": -1.0}, "beta"),
        ({"block_out_channels": [8, 10]}, "norm_num_groups"),
        ({"image_size": 18}, "downsampling_factor"),
        ({"latent_channels": 0}, "latent_channels"),
        ({"hidden_act": "nope"}, "hidden_act"),
        ({"tile_overlap": -1}, "tile_overlap"),
    ],
)
def test_invalid_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        hubformers.VAEConfig(**{**TINY_CONV, **overrides})


def test_bad_input():
    conv = hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV))
    mlp = hubformers.VAEModel(hubformers.VAEConfig(**TINY_MLP))
    with pytest.raises(ValueError, match=r"pixel values in \[-1, 1\]"):
        conv(images() * 3)
    with pytest.raises(ValueError, match=r"pixel values in \[0, 1\]"):
        mlp(images(2, 1, 8, 8))  # the Bernoulli likelihood needs [0, 1]
    with pytest.raises(ValueError, match="3 channels"):
        conv(images(2, 1, 16, 16))
    with pytest.raises(ValueError, match="divisible by the down-sampling factor 4"):
        conv(images(2, 3, 16, 18))
    with pytest.raises(ValueError, match="8x8"):
        mlp(images(2, 1, 16, 16, low=0.0))
    with pytest.raises(ValueError, match="floating point"):
        conv(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="latents"):
        conv.decode(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="architecture='conv'"):
        mlp.decode(torch.randn(2, 3), tiled=True)
    with pytest.raises(ValueError, match="num_samples"):
        mlp.log_likelihood(images(2, 1, 8, 8, low=0.0), 0)
    for chunk_size in (0, -2):
        with pytest.raises(ValueError, match=f"`chunk_size` must be an integer >= 1, got {chunk_size}"):
            mlp.log_likelihood(images(2, 1, 8, 8, low=0.0), 4, chunk_size=chunk_size)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m: m.decode(torch.randn(1, 4, 4, 4), tiled=True, tile_size=0),
            "`tile_size` must be an integer >= 1, got 0",
        ),
        (lambda m: m.decode(torch.randn(1, 4, 4, 4), tiled=True, tile_size=-2), "`tile_size` .* got -2"),
        (lambda m: m.encode(images(1, 3, 16, 16), tiled=True, tile_size=0), "`tile_size` .* got 0"),
        (
            lambda m: m.decode(torch.randn(1, 4, 4, 4), tiled=True, tile_overlap=-1),
            "`tile_overlap` must be an integer >= 0, got -1",
        ),
        (lambda m: m.encode(images(1, 3, 16, 16), tiled=True, tile_overlap=-3), "`tile_overlap` .* got -3"),
        (lambda m: m.decode(torch.randn(2, 4, 4, 4), slice_size=0), "`slice_size` must be an integer >= 1, got 0"),
        (lambda m: m.encode(images(2, 3, 16, 16), slice_size=-1), "`slice_size` .* got -1"),
        (lambda m: m.sample(0), "`num_samples` must be an integer >= 1, got 0"),
        (lambda m: m.sample(-1), "`num_samples` .* got -1"),
        (lambda m: m.decode(torch.randn(0, 4, 4, 4)), r"at least one latent, got shape \(0, 4, 4, 4\)"),
        (lambda m: m.encode(images(0, 3, 16, 16)), r"at least one image, got shape \(0, 3, 16, 16\)"),
    ],
)
def test_bad_tiling_slicing_and_sample_arguments(call, message):
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV)).eval()
    with pytest.raises(ValueError, match=message):
        call(model)


def test_rejected_calls_leave_the_model_as_it_was():
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV)).eval()
    config, weights = model.config.to_dict(), {name: t.clone() for name, t in model.state_dict().items()}
    latents = torch.randn(1, 4, 4, 4)
    before = model.decode(latents, tiled=True, tile_size=2).sample
    for bad in [dict(tile_size=0), dict(tile_overlap=-1), dict(slice_size=0)]:
        with pytest.raises(ValueError):
            model.decode(latents, tiled=True, **bad)
    with pytest.raises(ValueError):
        model(images() * 3)
    assert model.config.to_dict() == config
    assert all(torch.equal(t, weights[name]) for name, t in model.state_dict().items())
    assert all(norm.tiling is None for norm in model.modules() if isinstance(norm, modeling_vae.TiledGroupNorm))
    assert torch.equal(model.decode(latents, tiled=True, tile_size=2).sample, before)


# -- diffusers' VAE API, which its pipelines call -------------------------------------------------------------


def test_latent_dist_is_diffusers():
    ours, reference = conv_pair()
    x = images()
    with torch.no_grad():
        expected, got = reference.encode(x).latent_dist, ours.encode(x).latent_dist
        draws = [dist.sample(torch.Generator().manual_seed(3)) for dist in (expected, got)]
        for a, b in [(expected.mean, got.mean), (expected.mode(), got.mode()), (*draws,), (expected.kl(), got.kl())]:
            assert max_abs_diff(a, b) <= TOL
        assert max_abs_diff(expected.std, got.std) <= TOL and max_abs_diff(expected.var, got.var) <= TOL


def test_decode_returns_what_diffusers_decode_returns():
    """diffusers' pipelines call `vae.decode(latents / vae.config.scaling_factor).sample` (or `["sample"]`, or
    `return_dict=False` and `[0]`): every form gives diffusers' images on the same weights."""
    ours, reference = conv_pair(scaling_factor=0.18215)
    latents = torch.randn(2, 4, 4, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = latents / ours.config.scaling_factor
        image = reference.decode(z).sample
        output = ours.decode(z)
        assert isinstance(output, modeling_vae.VAEDecoderOutput)
        assert max_abs_diff(output.sample, image) <= 1e-4
        (alone,) = ours.decode(z, return_dict=False, generator=torch.Generator())
        for form in (output["sample"], output[0], alone, ours.decode(z, return_dict=True).sample):
            assert torch.equal(form, output.sample)
        assert max_abs_diff(ours.decode(latents, scaled=True).sample, image) <= 1e-4


def test_tiling_and_slicing_switches_set_the_defaults(monkeypatch):
    ours, _ = conv_pair()
    seen = []
    monkeypatch.setattr(ours, "decoder_output", lambda chunk, tiled, *args: seen.append((len(chunk), tiled)) or chunk)
    monkeypatch.setattr(ours, "mean_image", lambda output: output)
    z = torch.randn(3, 4, 4, 4)
    ours.decode(z)
    ours.enable_tiling(), ours.enable_slicing()
    ours.decode(z)
    ours.decode(z, tiled=False, slice_size=2)  # the arguments win over the switches
    ours.disable_tiling(), ours.disable_slicing()
    ours.decode(z)
    assert seen == [(3, False), (1, True), (1, True), (1, True), (2, False), (1, False), (3, False)]
    with pytest.raises(ValueError, match="Tiling needs architecture='conv'"):
        hubformers.VAEModel(hubformers.VAEConfig(**TINY_MLP)).enable_tiling()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"latents_mean": [0.0, 1.0]}, "`latents_mean` needs one value per latent channel \\(4\\), got 2"),
        ({"latents_std": [1.0, 1.0, 0.0, 1.0]}, "`latents_std` must be positive"),
    ],
)
def test_invalid_latent_statistics(overrides, message):
    with pytest.raises(ValueError, match=message):
        hubformers.VAEConfig(**{**TINY_CONV, **overrides})


def test_diffusers_fields_are_read_and_saved(tmp_path):
    config = hubformers.VAEConfig(**TINY_CONV, latents_mean=[0.1] * 4, latents_std=[2.0] * 4)
    assert config.force_upcast is False  # the decoder upcasts only what overflows (see below)
    config.save_pretrained(tmp_path)
    loaded = hubformers.VAEConfig.from_pretrained(tmp_path)
    assert loaded.latents_mean == [0.1] * 4 and loaded.latents_std == [2.0] * 4 and loaded.force_upcast is False


# -- float16: the stages that overflow run in float32 ---------------------------------------------------------


def overflowing_pair():
    """Our VAE and diffusers' on weights whose decoder's last ResNet sends activations to about 1.6e5, beyond
    float16's 65504, while the final GroupNorm brings them back: float32 decodes are finite."""
    ours, reference = conv_pair(block_out_channels=[8, 16])
    with torch.no_grad():
        conv = reference.decoder.up_blocks[-1].resnets[-1].conv2
        conv.weight.mul_(1e5), conv.bias.mul_(1e5)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


@pytest.mark.parametrize("tiled", [False, True], ids=["whole", "tiled"])
def test_float16_decode_upcasts_only_the_stages_that_overflow(monkeypatch, tiled):
    ours, reference = overflowing_pair()
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    upcast = []
    in_float32 = modeling_vae.in_float32
    monkeypatch.setattr(
        modeling_vae, "in_float32", lambda step, modules, x: upcast.append(modules) or in_float32(step, modules, x)
    )
    with torch.no_grad():
        expected = ours.decode(z, tiled=tiled, tile_size=4).sample
        assert torch.isfinite(expected).all() and max_abs_diff(expected, reference.decode(z).sample) <= 1e-4
        assert not upcast  # nothing overflows float32
        reference.half(), ours.half()
        assert not torch.isfinite(reference.decode(z.half()).sample).all()  # diffusers' plain float16 decode
        got = ours.decode(z.half(), tiled=tiled, tile_size=4).sample
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    assert max_abs_diff(got.float(), expected) <= 1e-2  # float16 rounding of the other stages
    # float32 ran only where float16 overflows: the last ResNet and, as its output is out of float16's range, the
    # output norm and conv (a tiled decode upcasts the whole last stage, its unit of work); the weights stay float16
    decoder = ours.decoder
    last = decoder.up_blocks[-1].resnets[-1]
    tiled_stage = decoder.stage_modules(len(decoder.up_blocks) - 1)
    assert upcast == ([tiled_stage] if tiled else [[last], [decoder.conv_norm_out, decoder.conv_out]])
    assert {parameter.dtype for parameter in ours.parameters()} == {torch.float16}


def test_float32_step_gives_gradients_to_the_half_precision_weights():
    ours, _ = overflowing_pair()
    ours.half()
    z = torch.randn(1, 4, 8, 8, dtype=torch.float16)
    ours.decode(z).sample.float().sum().backward()
    conv = ours.decoder.conv_out.weight
    assert conv.grad is not None and conv.grad.dtype == torch.float16 and torch.isfinite(conv.grad).all()


PEAK_MEMORY = """
import sys, torch, hubformers
mode = sys.argv[1]
def high_water_kib():  # this process's own peak (VmHWM): getrusage's ru_maxrss starts at the parent's
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
torch.manual_seed(0)
config = hubformers.VAEConfig(architecture="conv", num_channels=3, likelihood="gaussian", image_size=512,
    block_out_channels=[32, 64, 64, 64], layers_per_block=1, norm_num_groups=8, latent_channels=4)
vae = hubformers.VAEModel(config).eval()
with torch.no_grad():
    if mode != "float16, no overflow":
        conv = vae.decoder.up_blocks[-1].resnets[-1].conv2
        conv.weight.mul_(1e5), conv.bias.mul_(1e5)
    vae.to(torch.float32 if mode == "float32" else torch.float16)
    z = torch.randn(1, 4, 64, 64).to(vae.dtype)
    vae.decode(z[..., :8, :8])  # kernels loaded, allocator warm
    before = high_water_kib()
    finite = torch.isfinite(vae.decode(z).sample).all().item()
print(high_water_kib() - before, finite)
"""


@pytest.mark.slow
def test_float16_decode_that_overflows_peaks_below_a_float32_decode():
    """Peak memory of a 512x512 decode, each in a fresh process: the growth of the resident-set high-water mark
    (VmHWM) during the call, with every allocation over 64 KiB its own mapping, returned when freed, so
    that the mark follows the live tensors. A float16 decode whose last ResNet overflows against the float32
    decode that diffusers' `force_upcast` runs, and a float16 decode that does not overflow."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    peaks = {}
    for mode in ("float32", "float16, overflow", "float16, no overflow"):
        run = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY, mode], env=env, capture_output=True, text=True, check=True
        )
        grown, finite = run.stdout.split()
        assert finite == "True"
        peaks[mode] = int(grown) / 1024  # MiB
    print(", ".join(f"{mode}: {peak:.0f} MiB" for mode, peak in peaks.items()))
    assert peaks["float16, no overflow"] < peaks["float16, overflow"] < 0.9 * peaks["float32"]


def test_float16_encode_upcasts_the_layers_that_overflow():
    ours, reference = conv_pair(block_out_channels=[8, 16])
    with torch.no_grad():
        conv = reference.encoder.down_blocks[-1].resnets[-1].conv2  # the mid block's GroupNorm brings it back
        conv.weight.mul_(1e5), conv.bias.mul_(1e5)
        ours.load_state_dict(reference.state_dict(), strict=True)
        x = images()
        expected = ours.encode(x).latent_mean
        assert max_abs_diff(expected, reference.encode(x).latent_dist.mean) <= 1e-4
        reference.half(), ours.half()
        assert not torch.isfinite(reference.encode(x.half()).latent_dist.mean).all()
        got = ours.encode(x.half()).latent_mean
    assert got.dtype == torch.float16 and max_abs_diff(got.float(), expected) <= 1e-2


def test_float16_decoder_on_the_meta_device_runs_without_reading_values():
    with torch.device("meta"):
        vae = hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV)).half()
        image = vae.decoder(torch.randn(1, 4, 4, 4, dtype=torch.float16))
    assert image.is_meta and image.shape == (1, 3, 16, 16) and image.dtype == torch.float16
