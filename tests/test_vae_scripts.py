"""`hubformers train vae` and `hubformers benchmark vae` on tiny settings: the folder, figures, metrics and card a
training run leaves, and a benchmark whose contenders agree. Functional only: nothing depends on the machine's
speed."""

import argparse
import json
import math

import torch
from PIL import Image

from hubformers.scripts import benchmark, train
from hubformers.scripts.benchmark_vae import tiling_differences


def run(module, *argv) -> None:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    module.main(parser.parse_args([str(arg) for arg in argv]))


def test_train_vae_leaves_model_figures_metrics_and_card(tmp_path, capsys):
    out = tmp_path / "run"
    run(
        train, "vae", "--dataset", "digits", "--epochs", "2", "--max-train-samples", "400", "--batch-size", "50",
        "--iw-samples", "20", "--output-dir", out,
    )  # fmt: skip
    assert "test ELBO" in capsys.readouterr().out
    metrics = json.loads((out / "test_results.json").read_text())
    elbo, log_likelihood = metrics["test_elbo"], metrics["test_log_likelihood"]
    # 64 binary pixels: between a perfect model (0 nats) and a far worse one than coin flips (64 log 2 = 44 nats)
    assert -44 < elbo < 0 and math.isfinite(log_likelihood)
    assert log_likelihood >= elbo - 0.5  # the importance-weighted bound is the tighter one, up to noise
    for name in ("samples.png", "reconstructions.png", "interpolation.png", "manifold.png"):
        assert Image.open(out / name).size[0] > 0, name
    card = (out / "README.md").read_text()
    assert f"{round(elbo, 2)}" in card and "![manifold.png](manifold.png)" in card
    config = json.loads((out / "config.json").read_text())
    assert config["beta"] == 1.0 and config["latent_size"] == 2  # the KL warm-up leaves the configured beta


def test_vae_benchmark_contenders_agree(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    benchmark.main(
        parser.parse_args(
            [
                "vae", "--channels", "8,16", "--layers-per-block", "1", "--image-size", "16", "--batch-size", "1",
                "--repeats", "2", "--warmup", "1", "--peak-size", "64", "--threads", "1", "--json", str(tmp_path / "r.json"),
            ]
        )
    )  # fmt: skip
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["max_output_differences"]["diffusers"] <= 1e-5
    assert {row["implementation"] for row in report["rows"]} == {"ours", "diffusers"}
    assert report["forward_gflop"] > 0
    assert "ours / fastest peer: forward" in capsys.readouterr().out


def test_tiling_figures_show_diffusers_seams_and_none_of_ours():
    torch.manual_seed(0)
    differences = tiling_differences(dict(channels=[8, 16], layers_per_block=1, latent_size=32, tile_size=8))
    pixel_range = differences["untiled_range"]
    assert differences["ours_tiled_vs_untiled"] < 1e-4 * pixel_range
    assert differences["diffusers_tiled_vs_untiled"] > 0.01 * pixel_range
