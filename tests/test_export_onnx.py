"""`hubformers export onnx`: every architecture's graphs run in onnxruntime with a batch and a size other than
the export's and give PyTorch's outputs (max abs diff <= 1e-4), and the folder loads as a model folder."""

import pytest
import torch
from conftest import TINY_VIT
from transformers import AutoConfig

import hubformers
from hubformers import cli
from hubformers.scripts.export_onnx import export

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOLERANCE = 1e-4
TINY_TEXT = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)


def tiny_model(architecture: str) -> torch.nn.Module:
    if architecture == "vit":
        return hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT))
    if architecture == "swin":
        config = hubformers.SwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=3
        )
        return hubformers.SwinForImageClassification(config)
    if architecture == "clip":
        vision = dict(TINY_TEXT, image_size=32, patch_size=8)
        vision.pop("vocab_size")
        text = dict(TINY_TEXT, max_position_embeddings=16)
        return hubformers.CLIPModel(hubformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    if architecture == "vae":
        config = hubformers.VAEConfig(
            architecture="conv",
            likelihood="gaussian",
            num_channels=3,
            image_size=16,
            block_out_channels=[8, 16],
            layers_per_block=1,
            norm_num_groups=4,
            latent_channels=2,
        )
        return hubformers.VAEModel(config)
    config = hubformers.LongformerConfig(**TINY_TEXT, attention_window=[4, 4], max_position_embeddings=64)
    return hubformers.LongformerForMaskedLM(config)


def run_onnx(path, **inputs: torch.Tensor) -> list[torch.Tensor]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(out) for out in session.run(None, {k: v.numpy() for k, v in inputs.items()})]


def max_diff(got: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    assert [g.shape for g in got] == [e.shape for e in expected]
    return max((g - e).abs().max().item() for g, e in zip(got, expected))


def exported(tmp_path, architecture: str):
    model = tiny_model(architecture).eval()
    model.save_pretrained(tmp_path / "model")
    written = export(tmp_path / "model", tmp_path / "onnx")
    assert all(difference <= TOLERANCE for difference in written.values()), written
    return model, tmp_path / "onnx"


@torch.no_grad()
def test_vit_graph_runs_at_other_sizes(tmp_path):
    model, folder = exported(tmp_path, "vit")
    assert AutoConfig.from_pretrained(folder).model_type == "hubformers_vit"
    for batch, size in [(1, 24), (4, 56)]:
        pixel_values = torch.randn(batch, 3, size, size + 8)
        expected = [model(pixel_values, interpolate_pos_encoding=True).logits]
        assert max_diff(run_onnx(folder / "model.onnx", pixel_values=pixel_values), expected) <= TOLERANCE


@torch.no_grad()
def test_vae_encoder_and_decoder_run_at_other_sizes(tmp_path):
    model, folder = exported(tmp_path, "vae")
    pixel_values = torch.rand(3, 3, 24, 40) * 2 - 1
    encoded = model.encode(pixel_values)
    got = run_onnx(folder / "encoder_model.onnx", pixel_values=pixel_values)
    assert max_diff(got, [encoded.latent_mean, encoded.latent_logvar]) <= TOLERANCE
    latents = torch.randn(2, 2, 7, 5)
    assert (
        max_diff(run_onnx(folder / "decoder_model.onnx", latents=latents), [model.decode(latents).sample]) <= TOLERANCE
    )


@pytest.mark.slow
@torch.no_grad()
def test_swin_graph_runs_at_sizes_that_need_other_padding(tmp_path):
    model, folder = exported(tmp_path, "swin")
    for height, width in [(44, 28), (64, 56), (20, 36)]:
        pixel_values = torch.randn(2, 3, height, width)
        got = run_onnx(folder / "model.onnx", pixel_values=pixel_values)
        assert max_diff(got, [model(pixel_values).logits]) <= TOLERANCE


@pytest.mark.slow
@torch.no_grad()
def test_clip_joint_graph_and_towers(tmp_path):
    model, folder = exported(tmp_path, "clip")
    input_ids = torch.randint(0, 97, (2, 11))  # below the end-of-text id (98), which ends each text
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    input_ids[0, 10], input_ids[1, 5] = 98, 98
    pixel_values = torch.randn(3, 3, 40, 48)
    outputs = model(input_ids, pixel_values, attention_mask, interpolate_pos_encoding=True)
    got = run_onnx(folder / "model.onnx", input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
    expected = [outputs.logits_per_image, outputs.logits_per_text, outputs.text_embeds, outputs.image_embeds]
    assert max_diff(got, expected) <= TOLERANCE
    text = run_onnx(folder / "text_model.onnx", input_ids=input_ids, attention_mask=attention_mask)
    assert max_diff(text, [model.get_text_features(input_ids, attention_mask).pooler_output]) <= TOLERANCE
    image = run_onnx(folder / "vision_model.onnx", pixel_values=pixel_values)
    expected_image = model.get_image_features(pixel_values, interpolate_pos_encoding=True).pooler_output
    assert max_diff(image, [expected_image]) <= TOLERANCE


@pytest.mark.slow
@torch.no_grad()
def test_longformer_graph_with_other_lengths_and_global_tokens(tmp_path):
    model, folder = exported(tmp_path, "longformer")
    for length, num_global in [(5, 0), (23, 4), (40, 1)]:
        input_ids = torch.randint(3, 99, (2, length))
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, length // 2 :] = 0
        global_attention_mask = torch.zeros_like(input_ids)
        global_attention_mask[:, :num_global] = 1
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask)
        assert max_diff(run_onnx(folder / "model.onnx", **inputs), [model(**inputs).logits]) <= TOLERANCE


def test_command_writes_graph_config_and_processor(tmp_path, capsys):
    model = tiny_model("vit")
    model.save_pretrained(tmp_path / "model")
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "model")
    cli.main(["export", "onnx", str(tmp_path / "model"), str(tmp_path / "onnx")])
    names = {path.name for path in (tmp_path / "onnx").iterdir()}
    assert {"model.onnx", "config.json", "preprocessor_config.json", "modeling_vit.py"} <= names
    assert "model.safetensors" not in names
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out


def test_refuses_a_folder_of_another_library(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="not a hubformers model class"):
        export(tmp_path, tmp_path / "onnx")
