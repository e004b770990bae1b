"""`hubformers benchmark vit` on a tiny model: every implementation is timed in both modes and the table,
ratios and JSON are well-formed. Functional only: nothing here depends on how fast the machine is."""

import argparse
import json
import re

import pytest
import torch
from conftest import TINY_VIT
from torch.utils.flop_counter import FlopCounterMode

import hubformers
from hubformers.scripts import benchmark, benchmark_vit

pytest.importorskip("timm")

IMPLEMENTATIONS = ("ours", "transformers", "timm")
ROW = re.compile(
    r"^(forward\+backward|forward)\s+(\w+)\s+(\S+)\s+(\S+)\s+\((\S+)-(\S+)\)\s+(\S+)\s+(\S+)%$", re.MULTILINE
)


def run_cli(*argv: str) -> None:
    """`hubformers benchmark ARGV`, through the same hooks `hubformers.cli` uses."""
    parser = argparse.ArgumentParser(prog="hubformers benchmark")
    benchmark.add_arguments(parser)
    benchmark.main(parser.parse_args([str(arg) for arg in argv]))


def test_tiny_vit_benchmark_reports_every_implementation(tmp_path, capsys):
    run_cli(
        "vit", "--model", "vit_tiny_patch16_224",
        "--model-args", '{"embed_dim": 32, "depth": 2, "num_heads": 4, "patch_size": 8, "num_classes": 3}',
        "--image-size", "32", "--batch-size", "2", "--repeats", "2", "--warmup", "1", "--peak-size", "128",
        "--threads", "1", "--json", tmp_path / "results.json",
    )  # fmt: skip
    output = capsys.readouterr().out
    assert "torch threads: 1" in output
    assert re.search(r"max \|output - ours\|: transformers \S+, timm \S+", output)
    rows = {(mode, name): [float(value) for value in values] for mode, name, *values in ROW.findall(output)}
    assert set(rows) == {(mode, name) for mode in benchmark.MODES for name in IMPLEMENTATIONS}
    for (mode, name), (median, ratio, low, high, gflops, peak_percent) in rows.items():
        assert median > 0 and ratio > 0 and gflops > 0 and peak_percent > 0, (mode, name)
        assert low <= round(ratio, 2) <= high or name == "ours", (mode, name)
    assert all(rows[(mode, "ours")][1:4] == [1.0, 1.0, 1.0] for mode in benchmark.MODES)
    assert re.search(r"ours / fastest peer: forward \d+\.\d+ \(vs \w+\), forward\+backward \d+\.\d+", output)

    report = json.loads((tmp_path / "results.json").read_text())
    assert report["threads"] == 1 and len(report["rows"]) == 6
    ours_times = {row["mode"]: row["times_s"] for row in report["rows"] if row["implementation"] == "ours"}
    for row in report["rows"]:
        assert len(row["times_s"]) == 2
        paired = [mine / theirs for mine, theirs in zip(ours_times[row["mode"]], row["times_s"])]
        assert row["ours_over_this"] == pytest.approx(sum(paired) / 2)  # the median of two
    assert max(report["max_output_differences"].values()) <= 1e-5
    assert set(report["ours_over_fastest_peer"]) == set(benchmark.MODES)


def test_vit_flops_match_torch_flop_counter():
    """The analytic count equals what FlopCounterMode sees in ours (eager attention: plain matmuls) when it
    computes every token of the last layer, as the peers do; on its own ours does less."""
    config = hubformers.ViTConfig(**TINY_VIT)
    model = hubformers.ViTForImageClassification(config).eval()
    model.set_attn_implementation("eager")
    counts = []
    for every_token in (True, False):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.randn(2, 3, 32, 32), output_hidden_states=every_token)
        counts.append(counter.get_total_flops())
    assert benchmark_vit.vit_forward_flops(config, batch_size=2) == counts[0] > counts[1]


def test_hubformers_command_routes_to_the_benchmark():
    from hubformers import cli

    argv = ["benchmark", "vit", "--repeats", "3"]
    args = cli.build_parser(argv).parse_args(argv)
    assert args.run is benchmark.main and args.plugin is benchmark_vit
    assert (args.repeats, args.batch_size, args.model) == (3, 8, "vit_base_patch16_224")
