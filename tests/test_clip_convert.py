"""`hubformers convert open_clip`: OpenAI-style (QuickGELU) and LAION-style (GELU) ViT CLIPs convert with the same
logits as open_clip's on its own tokenizer's output; what our CLIP cannot express is refused."""

import contextlib
import io

import pytest
import torch
from conftest import max_abs_diff
from safetensors.torch import save_file
from transformers import AutoModel, AutoProcessor

import hubformers
from hubformers import cli

open_clip = pytest.importorskip("open_clip")

TINY = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 12, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}
CAPTIONS = ["a photo of a cat", "a diagram of the digit seven!", "Two dogs playing in the snow, 2024."]


def convert(folder, name: str, model_args: dict) -> torch.nn.Module:
    """Build an open_clip model, save its weights, convert them with the command; the open_clip model."""
    import json

    reference = open_clip.create_model(name, pretrained=None, **model_args).eval()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, folder / "open_clip.safetensors")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main(
            [
                "convert",
                "open_clip",
                name,
                "--output-dir",
                str(folder / "ours"),
                "--checkpoint",
                str(folder / "open_clip.safetensors"),
                "--model-args",
                json.dumps(model_args),
            ]
        )
    assert "the logits match open_clip's" in printed.getvalue()
    return reference


@pytest.mark.parametrize("name, activation", [("ViT-B-32-quickgelu", "quick_gelu"), ("ViT-B-32", "gelu")])
def test_converted_model_gives_open_clips_logits(tmp_path, name, activation):
    reference = convert(tmp_path, name, TINY)
    ours = AutoModel.from_pretrained(tmp_path / "ours").eval()
    assert isinstance(ours, hubformers.CLIPModel)
    assert ours.config.vision_config.hidden_act == ours.config.text_config.hidden_act == activation

    processor = AutoProcessor.from_pretrained(tmp_path / "ours")
    tokens = open_clip.get_tokenizer(name, context_length=16)(CAPTIONS)
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        image_features = reference.encode_image(pixel_values, normalize=True)
        text_features = reference.encode_text(tokens, normalize=True)
        expected = reference.logit_scale.exp() * image_features @ text_features.t()
        inputs = processor(text=CAPTIONS, padding="max_length", return_tensors="pt")
        got = ours(**inputs, pixel_values=pixel_values)
    assert max_abs_diff(got.logits_per_image, expected) <= 1e-5
    assert max_abs_diff(got.image_embeds, image_features) <= 1e-5
    assert max_abs_diff(got.text_embeds, text_features) <= 1e-5


def test_refuses_what_our_clip_cannot_express(tmp_path):
    siglip_like = open_clip.create_model("ViT-B-32", pretrained=None, init_logit_bias=-10.0, **TINY)
    from hubformers.scripts.convert_open_clip import convert as convert_model

    with pytest.raises(ValueError, match="logit bias"):
        convert_model(siglip_like, tmp_path)
    pooled = open_clip.create_model(
        "ViT-B-32", pretrained=None, **{**TINY, "vision_cfg": {**TINY["vision_cfg"], "pool_type": "avg"}}
    )
    with pytest.raises(ValueError, match="image pooling 'avg'"):
        convert_model(pooled, tmp_path)


def test_unknown_model_name(tmp_path):
    with pytest.raises(ValueError, match="Unknown open_clip model 'ViT-Q-99'"):
        cli.main(["convert", "open_clip", "ViT-Q-99", "--output-dir", str(tmp_path)])


def test_tiny_benchmark_workload_runs_and_contenders_agree():
    """`hubformers benchmark clip` on a tiny model: the three implementations give the same logits and the
    loss of the forward+backward mode back-propagates. Functional only (no timing)."""
    import argparse

    from hubformers.scripts import benchmark_clip

    args = argparse.Namespace(model="ViT-B-32", model_args=TINY, batch_size=2, modes=["forward"])
    workload = benchmark_clip.workload(args)
    assert [c.name for c in workload.contenders] == ["ours", "transformers", "open_clip"]
    assert workload.modes == ("forward",) and workload.forward_flops > 0
    with torch.no_grad():
        ours, *others = [contender.forward() for contender in workload.contenders]
    assert ours.shape == (2, 2)
    for other in others:
        assert max_abs_diff(ours, other) <= 1e-5
    for contender in workload.contenders:
        contender.loss().backward()
        assert any(p.grad is not None for p in contender.model.parameters()), contender.name


@pytest.mark.slow
def test_full_size_openai_model_converts(tmp_path):
    """ViT-B/32 as OpenAI trained it (QuickGELU), random weights: the command checks the logits itself."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main(["convert", "open_clip", "ViT-B-32-quickgelu", "--output-dir", str(tmp_path)])
    assert "the logits match open_clip's" in printed.getvalue()
    config = AutoModel.from_pretrained(tmp_path).config
    assert config.vision_config.hidden_size == 768 and config.text_config.hidden_act == "quick_gelu"
