"""`hubformers convert timm`: same logits and features as timm on the same weights, a folder that loads with
the Auto classes and preprocesses like timm, local checkpoints only, and clear refusals of the variants our
ViT cannot express."""

import argparse

import pytest
import torch
from conftest import max_abs_diff
from transformers import AutoImageProcessor, AutoModelForImageClassification

import hubformers
from hubformers.scripts import convert, convert_timm
from hubformers.scripts.convert_timm_vit import convert_timm_vit

timm = pytest.importorskip("timm")

TOL = 1e-5
TINY_TIMM = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=5)


def tiny_timm(**overrides):
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**TINY_TIMM, **overrides}).eval()


def run_cli(*argv: str) -> None:
    """`hubformers convert ARGV`, through the same hooks `hubformers.cli` uses."""
    parser = argparse.ArgumentParser(prog="hubformers convert")
    convert.add_arguments(parser)
    convert.main(parser.parse_args([str(arg) for arg in argv]))


def assert_same_logits(timm_model, folder):
    ours = AutoModelForImageClassification.from_pretrained(folder).eval()
    assert isinstance(ours, hubformers.ViTForImageClassification)
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_abs_diff(timm_model(pixel_values), ours(pixel_values).logits) <= TOL


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_logits_and_features_match_timm(qkv_bias):
    timm_model = tiny_timm(qkv_bias=qkv_bias)
    ours = convert_timm_vit(timm_model)
    assert ours.config.qkv_bias is qkv_bias
    assert ours.config.layer_norm_eps == 1e-6 and ours.config.hidden_act == "gelu"
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = timm_model.forward_features(pixel_values)
        pre_logits = timm_model.forward_head(features, pre_logits=True)
        logits = timm_model(pixel_values)
        got = ours(pixel_values, output_hidden_states=True)
        our_features = ours.vit(pixel_values).last_hidden_state
    assert max_abs_diff(features, our_features) <= TOL
    assert max_abs_diff(pre_logits, our_features[:, 0]) <= TOL
    assert max_abs_diff(logits, got.logits) <= TOL


def test_saved_folder_loads_with_auto_classes(tmp_path):
    timm_model = tiny_timm(
        pretrained_cfg_overlay=dict(mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), crop_pct=0.8, interpolation="bilinear")
    )
    convert_timm_vit(timm_model, tmp_path)
    assert_same_logits(timm_model, tmp_path)
    config = AutoModelForImageClassification.from_pretrained(tmp_path).config
    assert config.id2label == {i: f"LABEL_{i}" for i in range(5)}
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, hubformers.ViTImageProcessor)
    assert list(processor.image_mean) == [0.1, 0.2, 0.3] and list(processor.image_std) == [0.4, 0.5, 0.6]
    assert processor.crop_size == {"height": 32, "width": 32} and processor.size == {"shortest_edge": 40}
    assert processor.resample == 2  # PIL bilinear


def test_processor_matches_timm_eval_transform(tmp_path):
    """The PIL backend resizes like timm's torchvision transforms on PIL images: the same pixels."""
    from PIL import Image

    timm_model = tiny_timm(pretrained_cfg_overlay=dict(crop_pct=0.8, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6)))
    convert_timm_vit(timm_model, tmp_path)
    processor = hubformers.ViTImageProcessorPil.from_pretrained(tmp_path)
    transform = timm.data.create_transform(**timm.data.resolve_input_data_config(timm_model))
    # an even margin on both sides: torchvision rounds odd center-crop offsets differently from transformers
    image = Image.fromarray(torch.randint(0, 256, (48, 48, 3), dtype=torch.uint8).numpy())
    got = processor(image, return_tensors="pt").pixel_values
    assert got.shape == (1, 3, 32, 32)
    assert max_abs_diff(transform(image)[None], got) <= 1e-6


def test_imagenet_head_gets_imagenet_label_names():
    ours = convert_timm_vit(tiny_timm(num_classes=1000))
    assert ours.config.id2label[1] == "goldfish, Carassius auratus"


def test_cli_converts_a_name_with_a_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    timm_model = tiny_timm()
    save_file(timm_model.state_dict(), tmp_path / "weights.safetensors")
    run_cli(
        "timm", "vit_tiny_patch16_224",
        "--checkpoint", tmp_path / "weights.safetensors",
        "--model-args", '{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 4, "num_classes": 5}',
        "--output-dir", tmp_path / "out",
    )  # fmt: skip
    assert_same_logits(timm_model, tmp_path / "out")


def test_cli_converts_a_timm_folder(tmp_path):
    timm_model = tiny_timm(qkv_bias=False)
    timm.models.save_for_hf(timm_model, tmp_path / "timm", safe_serialization=True)
    run_cli("timm", tmp_path / "timm", "--output-dir", tmp_path / "out")
    assert_same_logits(timm_model, tmp_path / "out")


def test_pickle_checkpoints_need_allow_pickle(tmp_path):
    timm_model = tiny_timm()
    torch.save({"state_dict": timm_model.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pth")
    with pytest.raises(ValueError, match="pickle-based checkpoint; pass --allow-pickle"):
        convert_timm_vit("vit_tiny_patch16_224", checkpoint=tmp_path / "checkpoint.pth", model_args=TINY_TIMM)
    ours = convert_timm_vit(
        "vit_tiny_patch16_224", checkpoint=tmp_path / "checkpoint.pth", allow_pickle=True, model_args=TINY_TIMM
    )
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_abs_diff(timm_model(pixel_values), ours(pixel_values).logits) <= TOL


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(class_token=False, global_pool="avg"), r"no class token \(class_token=False\)"),
        (dict(global_pool="avg"), "global_pool='avg'.*fc_norm"),
        (dict(fc_norm=True), r"a norm after pooling \(fc_norm\)"),
        (dict(pre_norm=True), r"a norm before the blocks \(pre_norm"),
        (dict(init_values=1e-5), "layer scale"),
        (dict(reg_tokens=4), r"register tokens \(reg_tokens=4\)"),
        (dict(qk_norm=True), "qk_norm"),
        (dict(no_embed_class=True), "no_embed_class"),
        (dict(dynamic_img_size=True), "dynamic_img_size"),
        (dict(patch_drop_rate=0.1), "patch dropout"),
        (dict(norm_layer="rmsnorm"), "RmsNorm"),
        (dict(act_layer="hard_swish"), "activation Hardswish"),
    ],
)
def test_unsupported_variants_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=f"'vit_tiny_patch16_224' cannot be converted.*{message}"):
        convert_timm_vit(tiny_timm(**overrides))


def test_distilled_and_other_architectures_are_refused():
    distilled = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, **TINY_TIMM)
    with pytest.raises(ValueError, match="a distillation token"):
        convert_timm_vit(distilled)
    with pytest.raises(ValueError, match=r"not a timm VisionTransformer \(Linear\)"):
        convert_timm_vit(torch.nn.Linear(2, 2))


def test_other_activations_convert_exactly():
    timm_model = tiny_timm(act_layer="gelu_tanh")
    ours = convert_timm_vit(timm_model)
    assert ours.config.hidden_act == "gelu_pytorch_tanh"
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_abs_diff(timm_model(pixel_values), ours(pixel_values).logits) <= TOL


def test_hubformers_command_routes_to_the_converter(tmp_path):
    from hubformers import cli

    argv = ["convert", "timm", "vit_base_patch16_224", "--output-dir", str(tmp_path)]
    args = cli.build_parser(argv).parse_args(argv)
    assert args.run is convert.main and args.plugin is convert_timm


def test_model_args_must_be_a_json_object(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli("timm", "vit_tiny_patch16_224", "--output-dir", tmp_path, "--model-args", "[32]")
    assert "expected a JSON object" in capsys.readouterr().err
