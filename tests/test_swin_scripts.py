"""Swin beyond the model: `hubformers convert timm swin_*` with timm's logits, `hubformers train swin`, the Hub
and remote-code round trips, the benchmark workload and its FLOP count."""

import argparse
import json

import pytest
import torch
from conftest import max_abs_diff
from test_remote_code import run_without_hubformers
from test_swin import TINY_SWIN, randomize
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForImageClassification

import hubformers
from hubformers import cli
from hubformers.scripts import benchmark, benchmark_swin
from hubformers.scripts.convert_timm_swin import convert_timm_swin
from hubformers.scripts.timm_models import import_timm

TIMM_TINY = dict(embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=4, img_size=32, patch_size=2)


def test_convert_timm_command_gives_timm_logits(tmp_path):
    model_args = json.dumps({**TIMM_TINY, "num_classes": 5})
    cli.main(
        ["convert", "timm", "swin_tiny_patch4_window7_224", "--output-dir", str(tmp_path), "--model-args", model_args]
    )
    ours = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(ours, hubformers.SwinForImageClassification) and ours.config.depths == [2, 2]
    # the same random weights rebuilt in timm: the folder must hold timm's model, parameter for parameter
    timm_model = import_timm().create_model("swin_tiny_patch4_window7_224", **{**TIMM_TINY, "num_classes": 5})
    timm_model.load_state_dict(convert_back(ours.state_dict(), timm_model.state_dict()))
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_abs_diff(timm_model.eval()(pixel_values), ours(pixel_values).logits) <= 1e-5


def convert_back(ours: dict, timm_state: dict) -> dict:
    """timm's state dict filled from ours by matching shapes in order (q, k, v stacked): an independent path."""
    from hubformers.scripts.convert_timm_swin import our_swin_keys

    return {key: torch.cat([ours[name] for name in our_swin_keys(key)]) for key in timm_state}


def test_converted_timm_swin_matches_on_random_weights():
    timm_model = randomize(import_timm().create_model("swin_tiny_patch4_window7_224", **TIMM_TINY, num_classes=3))
    ours = convert_timm_swin(timm_model)
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_abs_diff(timm_model(pixel_values), ours(pixel_values).logits) <= 1e-5


def test_timm_swin_smaller_than_its_windows_is_refused():
    timm_model = import_timm().create_model("swin_tiny_patch4_window7_224", **{**TIMM_TINY, "window_size": 10})
    with pytest.raises(ValueError, match="windows other than one square size"):
        convert_timm_swin(timm_model.eval())


def test_train_command_leaves_a_loadable_folder(tmp_path, hub):
    folder, repo_id = tmp_path / "swin", "user/swin-digits-quick"
    cli.main(["train", "swin", "--output-dir", str(folder), "--model-size", "tiny", "--epochs", "1",
              "--max-train-samples", "256", "--push-to-hub", repo_id])  # fmt: skip
    names = {path.name for path in folder.iterdir()}
    assert {"README.md", "config.json", "model.safetensors", "modeling_swin.py", "configuration_swin.py"} <= names
    assert json.loads((folder / "config.json").read_text())["model_type"] == "hubformers_swin"
    local, pushed = (AutoModelForImageClassification.from_pretrained(source).eval() for source in (folder, repo_id))
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(local(pixel_values).logits, pushed(pixel_values).logits)
    assert "hubformers train swin" in (folder / "README.md").read_text()


@pytest.mark.slow
def test_default_training_run_beats_chance(tmp_path):
    cli.main(["train", "swin", "--output-dir", str(tmp_path), "--epochs", "10"])
    assert json.loads((tmp_path / "test_results.json").read_text())["test_accuracy"] >= 0.8  # chance: 0.1


def test_remote_code_without_hubformers(tmp_path):
    folder = tmp_path / "model"
    model = randomize(hubformers.SwinForImageClassification(hubformers.SwinConfig(**TINY_SWIN)))
    model.save_pretrained(folder)
    pixel_values = torch.randn(2, 3, 36, 52)  # padding at every stage
    with torch.no_grad():
        torch.save({"pixel_values": pixel_values, "logits": model(pixel_values).logits}, folder / "expected.pt")
    out = run_without_hubformers(
        tmp_path,
        """
        from transformers import AutoBackbone
        expected = torch.load("model/expected.pt")
        model = AutoModelForImageClassification.from_pretrained("model", trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            diff = (model(expected["pixel_values"]).logits - expected["logits"]).abs().max().item()
        assert diff <= 1e-6, diff
        # (AutoBackbone.from_pretrained asks the Hub about every name, local folders included: from the config)
        config = AutoConfig.from_pretrained("model", trust_remote_code=True, out_features=["stage1", "stage3"])
        backbone = AutoBackbone.from_config(config, trust_remote_code=True).eval()
        maps = backbone(expected["pixel_values"]).feature_maps
        print(type(backbone).__name__, [tuple(m.shape) for m in maps])
        """,
    )
    assert "SwinBackbone [(2, 16, 18, 26), (2, 64, 5, 7)]" in out


def test_tiny_benchmark_contenders_agree(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    benchmark.main(parser.parse_args([
        "swin", "--model-args", json.dumps({**TIMM_TINY, "num_classes": 3}), "--batch-size", "2",
        "--repeats", "2", "--warmup", "1", "--peak-size", "128", "--threads", "1", "--json", str(tmp_path / "r.json"),
    ]))  # fmt: skip
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["rows"]) == 6 and max(report["max_output_differences"].values()) <= 1e-5


def test_swin_flops_match_torch_flop_counter():
    """The analytic count equals what FlopCounterMode sees in ours (eager attention: plain matmuls)."""
    config = hubformers.SwinConfig(**TINY_SWIN)
    model = hubformers.SwinForImageClassification(config).eval()
    model.set_attn_implementation("eager")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert benchmark_swin.swin_forward_flops(config, 2, (32, 32)) == counter.get_total_flops()


def test_scaling_script_shows_linear_cost(tmp_path):
    """FLOPs counted on meta-device models (nothing computed): Swin-T's cost per pixel stays within 15% of
    flat from 224 to 896 pixels, ViT-B/16's grows."""
    from hubformers.scripts import swin_scaling

    swin_scaling.main(["--output-dir", str(tmp_path), "--sides", "224", "320", "896", "--repeats", "0"])
    rows = json.loads((tmp_path / "swin_scaling.json").read_text())
    per_pixel = {(r["model"], r["side"]): r["flops_per_pixel_vs_224"] for r in rows}
    assert all(abs(per_pixel[("Swin-T", side)] - 1.0) <= 0.15 for side in (320, 896))
    assert per_pixel[("ViT-B/16", 896)] > 1.5
    assert (tmp_path / "swin_scaling.png").stat().st_size > 0
