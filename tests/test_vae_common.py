"""The VAE through the shared model tests (model_tester.py): the convolutional VAE against diffusers'
AutoencoderKL, and the MLP VAE (which has no reference) on the checks of our model against itself."""

import torch
from diffusers import AutoencoderKL
from model_tester import ModelTester, randomize
from safetensors.torch import load_file
from test_vae import TINY_CONV, TINY_MLP, diffusers_reference, images

import hubformers
from hubformers.scripts.convert_diffusers import convert


class TestConvVAE(ModelTester):
    all_model_classes = (hubformers.VAEModel,)
    reference_classes = {hubformers.VAEModel: AutoencoderKL}
    config = TINY_CONV
    has_attentions = False  # neither attention maps nor hidden states in its outputs
    common_properties = ("num_channels", "image_size", "latent_channels", "block_out_channels")
    minimal_config_kwargs = {}
    xfail = {}
    skip = {
        ("VAEModel", "test_forward_takes_the_reference_arguments"): "a documented, different API: diffusers' "
        "AutoencoderKL.forward(sample) returns the reconstruction, ours (pixel_values) the negative ELBO to train "
        "on; encode/decode are the parts that match diffusers'",
    }

    def config_kwargs(self, model_class):
        return dict(self.config)

    def make_inputs(self, model_class, batch_size=None):
        batch_size = batch_size or self.batch_size
        config = self.get_config(model_class)
        low = config.pixel_range[0]
        size, channels = config.image_size, config.num_channels
        # the posterior's mean, so that outputs are deterministic (training draws from it, seeded)
        return {"pixel_values": images(batch_size, channels, size, size, low=low), "sample_posterior": False}

    def build_reference(self, model_class, **overrides):
        return randomize(diffusers_reference(self.get_config(model_class, **overrides)))

    def save_reference(self, reference, folder):
        """diffusers' folder, converted by `hubformers convert diffusers`."""
        reference.save_pretrained(folder / "diffusers")
        convert(folder / "diffusers", folder)

    def load_in_reference(self, model_class, folder):
        """diffusers reads no config of ours: AutoencoderKL of the same shape, our weights under their names."""
        reference = diffusers_reference(hubformers.VAEConfig.from_pretrained(folder))
        reference.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
        return reference.eval()

    def reference_outputs(self, reference, model_class, inputs):
        """Our outputs with the posterior's mean: its mean and log-variance, and the mean decoded."""
        with torch.no_grad():
            posterior = reference.encode(inputs["pixel_values"]).latent_dist
            return {
                "latent_mean": posterior.mean,
                "latent_logvar": posterior.logvar,
                "latents": posterior.mean,
                "reconstruction": reference.decode(posterior.mean).sample,
            }


class TestMLPVAE(TestConvVAE):
    reference_classes = {hubformers.VAEModel: None}
    config = TINY_MLP
    common_properties = ("num_channels", "image_size", "hidden_size", "latent_size")
    xfail = {}
