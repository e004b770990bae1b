"""`hubformers benchmark vit` on a tiny model: every implementation is timed in both modes and the table,
ratios and JSON are well-formed. Functional only: nothing here depends on how fast the machine is."""

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

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
    assert "(3, 32, 32), float32, batch 2, 2 repeats (+1 warm-up), interleaved\ntorch threads: 1" in output
    assert "matmul peak (128x128 float32, median over the rounds): forward " in output
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
    assert (report["device"], report["dtype"]) == ("cpu", "float32")
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


TINY_VIT_ARGS = (
    "vit", "--model", "vit_tiny_patch16_224",
    "--model-args", '{"embed_dim": 32, "depth": 2, "num_heads": 4, "patch_size": 8, "num_classes": 3}',
    "--image-size", "32", "--batch-size", "2", "--peak-size", "64", "--threads", "1",
)  # fmt: skip


def test_bfloat16_runs_every_contender_and_the_peak_in_bfloat16(tmp_path, capsys, monkeypatch):
    """`--dtype bfloat16`: the models, their inputs and the peak's matmul all in bfloat16, the outputs compared
    at bfloat16's tolerance (they differ from float32's by ~1e-2 of their scale)."""
    dtypes, outputs = [], {}
    original, compare = benchmark.matmul_step, benchmark.max_output_differences
    monkeypatch.setattr(benchmark, "matmul_step", lambda *a: dtypes.append(a[1:]) or original(*a))

    def max_output_differences(workload, dtype):
        outputs.update({c.name: c.forward().dtype for c in workload.contenders})
        return compare(workload, dtype)

    monkeypatch.setattr(benchmark, "max_output_differences", max_output_differences)
    run_cli(
        *TINY_VIT_ARGS, "--repeats", "1", "--warmup", "0", "--dtype", "bfloat16", "--device", "cpu",
        "--json", tmp_path / "results.json",
    )  # fmt: skip
    output = capsys.readouterr().out
    assert "(3, 32, 32), bfloat16, batch 2" in output and "matmul peak (64x64 bfloat16" in output
    report = json.loads((tmp_path / "results.json").read_text())
    assert (report["device"], report["dtype"]) == ("cpu", "bfloat16")
    assert dtypes == [(torch.device("cpu"), torch.bfloat16)] * 2
    assert outputs == dict.fromkeys(IMPLEMENTATIONS, torch.bfloat16)


def test_places_modules_and_float_inputs_in_the_dtype_and_ids_keep_theirs():
    args = argparse.Namespace(device=torch.device("meta"), dtype=torch.bfloat16)
    layer = benchmark.place(args, torch.nn.Linear(2, 2))
    assert (layer.weight.device.type, layer.weight.dtype) == ("meta", torch.bfloat16)
    ids = benchmark.place(args, torch.arange(3))
    assert (ids.device.type, ids.dtype) == ("meta", torch.int64)
    on_cpu = argparse.Namespace(device=torch.device("cpu"), dtype=torch.float32)
    tensor = torch.randn(2)
    assert benchmark.place(on_cpu, tensor) is tensor  # nothing copied on the default device


def test_synchronises_around_each_timed_step_off_the_cpu():
    events = []
    steps = {name: (lambda name=name: events.append(name)) for name in ("a", "b")}
    times = benchmark.time_interleaved(steps, "test", repeats=2, warmup=1, synchronize=lambda: events.append("|"))
    assert events == ["|", "a", "|", "|", "b", "|", "|", "b", "|", "|", "a", "|", "|", "a", "|", "|", "b", "|"]
    assert {name: len(seconds) for name, seconds in times.items()} == {"a": 2, "b": 2}
    assert benchmark.synchronizer("cpu") is None
    assert benchmark.synchronizer("cuda:0").func is torch.cuda.synchronize


def workload_differing_by(relative: float, dtype: torch.dtype) -> benchmark.Workload:
    ours = torch.linspace(-2, 2, 50, dtype=dtype)
    peer = ours.clone()
    peer[7] += relative * 2
    model = torch.nn.Identity()
    contenders = [benchmark.Contender("ours", model, lambda: ours), benchmark.Contender("peer", model, lambda: peer)]
    return benchmark.Workload("test", contenders, forward_flops=1.0)


def test_output_tolerance_scales_with_the_dtype():
    """A peer 2e-2 of the output's scale away: a real disagreement in float32, rounding in bfloat16."""
    with pytest.raises(RuntimeError, match=r"within 0\.0002 of ours \(0\.0001 of its largest value, float32\)"):
        benchmark.max_output_differences(workload_differing_by(2e-2, torch.float32), torch.float32)
    differences = benchmark.max_output_differences(workload_differing_by(2e-2, torch.bfloat16), torch.bfloat16)
    assert differences["peer"] == pytest.approx(4e-2, rel=0.1)
    assert benchmark.max_output_differences(workload_differing_by(1e-5, torch.float32)) == {
        "peer": pytest.approx(2e-5, rel=1e-2)
    }
    with pytest.raises(RuntimeError, match="bfloat16"):
        benchmark.max_output_differences(workload_differing_by(0.2, torch.bfloat16), torch.bfloat16)


def test_rejects_an_unknown_dtype(capsys):
    parser = argparse.ArgumentParser(prog="hubformers benchmark")
    benchmark.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["vit", "--dtype", "float64"])
    assert "expected one of float32, bfloat16, float16, got 'float64'" in capsys.readouterr().err


def test_transformers_peer_takes_ours_attention_where_it_has_it():
    import transformers

    assert benchmark.peer_attention(transformers.ViTForImageClassification, "flex_attention") == "flex_attention"
    assert benchmark.peer_attention(transformers.SwinForImageClassification, "flex_attention") == "sdpa"
    assert benchmark.peer_attention(transformers.SwinForImageClassification, "eager") == "eager"


def test_agreement_reports_a_broken_case_and_goes_on():
    result = benchmark.agreement_case("vit", "no_such_attention", torch.device("cpu"))
    assert result["passed"] is False and "no_such_attention" in result["error"]


def test_agreement_checks_flex_on_cuda_and_flash_where_installed():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert benchmark.runs_attention("eager", cpu) and benchmark.runs_attention("sdpa", cuda)
    assert benchmark.runs_attention("flex_attention", cuda) and not benchmark.runs_attention("flex_attention", cpu)
    assert not benchmark.runs_attention("flash_attention_2", cpu)


GPU_SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu_benchmarks.sh"


def test_gpu_script_parses():
    subprocess.run(["bash", "-n", GPU_SCRIPT], check=True)


@pytest.mark.slow  # about a minute: the agreement check and both benchmarks of the tiny ViT
def test_gpu_script_runs_end_to_end_on_the_cpu(tmp_path):
    environment = {**os.environ, "DEVICE": "cpu", "QUICK": "1", "MODELS": "vit", "OUT": str(tmp_path)}
    environment["PYTHON"] = sys.executable
    subprocess.run(["bash", GPU_SCRIPT], cwd=GPU_SCRIPT.parents[1], env=environment, check=True, capture_output=True)
    agreement = json.loads((tmp_path / "agreement.json").read_text())
    assert set(agreement) == {"vit eager", "vit sdpa"} and all(case["passed"] for case in agreement.values())
    with tarfile.open(tmp_path / "benchmarks.tar") as packed:
        reports = {name: json.load(packed.extractfile(name)) for name in packed.getnames()}
    assert set(reports) == {"vit.float32.json", "vit.bfloat16.json"}
    assert [(r["device"], r["dtype"]) for r in reports.values()] == [("cpu", "float32"), ("cpu", "bfloat16")]
    assert "all steps passed" in (tmp_path / "gpu_benchmarks.log").read_text()


@pytest.mark.parametrize("model", benchmark.TINY)
def test_every_contender_and_its_inputs_go_to_the_device_in_the_dtype(model, monkeypatch):
    """On `meta` (a device that is not the CPU) in bfloat16: a model or input left behind on the CPU, or in
    float32, would fail the op that mixes them or show in the output. (Our value checks read the host: stubbed.)"""
    from test_device_paths import stub_host_reads

    stub_host_reads(monkeypatch)
    dtype = torch.bfloat16
    parser = argparse.ArgumentParser(prog="hubformers benchmark")
    benchmark.add_arguments(parser)
    argv = [
        model,
        *benchmark.TINY[model],
        *benchmark.TINY_COMMON,
        "--device",
        "meta",
        "--dtype",
        benchmark.dtype_name(dtype),
    ]
    args = parser.parse_args(argv)
    workload = args.plugin.workload(args)
    for contender in workload.contenders:
        output = contender.forward()
        assert (output.device.type, output.dtype) == ("meta", dtype), contender.name
        if contender.loss is not None:
            contender.loss().backward()
        assert {(p.device.type, p.dtype) for p in contender.model.parameters()} == {("meta", dtype)}
