"""`hubformers benchmark MODEL`: time hubformers against the reference implementations on the same weights.

All implementations run in this one process on the same inputs, interleaved (ours, transformers, timm,
then again in a rotated order), so that the machine's drift (other jobs, clocks: 2x swings on a shared
CPU) hits each alike. The table gives each one's median seconds, the ratio of ours to it (the median of
per-round ratios, with their quartiles), its GFLOP/s (matmul and patch-convolution FLOPs counted
analytically; the backward counted as twice the forward) and its share of a 2048x2048 float32 matmul's
rate measured in the same rounds.

Each model is a plug-in module with its own arguments (`hubformers benchmark vit`): its `workload(args)`
builds a `Workload` (the contenders on the same weights, as closures over their inputs); a new model adds a
module and an entry to `BENCHMARKS`. Scripts that sweep sizes reuse `time_interleaved` and `load_quietly`.

`--device` and `--dtype` (default: the CPU, float32) run every contender, its inputs and the matmul peak there and
in that dtype; off the CPU the device is synchronised before and after each timed call, since its kernels run
asynchronously and the call would otherwise return before they finish. float32 on CUDA is IEEE float32 (TF32 off
for matmuls and convolutions), so that the figures and output differences compare with the CPU's.

`python -m hubformers.scripts.benchmark agreement --device cuda` checks, without timing, that every benchmark's
contenders agree on tiny models of each architecture, under each attention implementation the device has
(scripts/gpu_benchmarks.sh runs it); `... tiny MODEL` prints a tiny model's arguments, one per line.
"""

import argparse
import functools
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from torch import nn

from hubformers.scripts.plugins import add_plugins

# --- what is timed ------------------------------------------------------------------------------------


@dataclass
class Contender:
    """One implementation: `forward()` runs it on the workload's inputs and returns the output compared
    across contenders; `loss()` is what the forward+backward mode back-propagates."""

    name: str
    model: nn.Module
    forward: Callable[[], torch.Tensor]
    loss: Callable[[], torch.Tensor] | None = None


@dataclass
class Workload:
    """Implementations of one model on the same weights (ours first), its forward FLOPs, the modes to time."""

    description: str
    contenders: list[Contender]
    forward_flops: float
    modes: tuple[str, ...] = ("forward", "forward+backward")


def forward_step(contender: Contender) -> None:
    with torch.no_grad():
        contender.forward()


def train_step(contender: Contender) -> None:
    contender.model.zero_grad(set_to_none=True)
    contender.loss().backward()


# mode -> (step, train mode, FLOPs as a multiple of the forward's: the backward takes two matmuls per one)
MODES = {"forward": (forward_step, False, 1), "forward+backward": (train_step, True, 3)}


# The matmul that measures the machine's peak runs as one more step of every round, so that it sees the
# same load as the models (a peak measured once, at a quieter moment, gave "130% of peak").
PEAK = "matmul peak"


def matmul_step(size: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Callable:
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    return lambda: torch.mm(a, b)


# --- devices and dtypes -------------------------------------------------------------------------------

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Largest max |peer - ours| / max |ours| accepted: float32 sums in another order differ by ~1e-6 of the output's
# scale; half precision rounds every intermediate (bfloat16 keeps 8 bits of mantissa: ~1e-2 through a network)
OUTPUT_TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_argument(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def place(args: argparse.Namespace, value):
    """A module or tensor on the benchmark's device; modules and floating-point tensors in its dtype (token ids
    and labels keep theirs). On the CPU in float32 this returns `value` itself. A workload built from a plain
    Namespace without `device` and `dtype` stays on the CPU in float32."""
    device, dtype = getattr(args, "device", "cpu"), getattr(args, "dtype", torch.float32)
    if isinstance(value, torch.Tensor) and not value.is_floating_point():
        return value.to(device)
    return value.to(device=device, dtype=dtype)


def synchronizer(device: torch.device | str) -> Callable[[], None] | None:
    """What waits for the device's queued kernels before a clock is read; None on the CPU, whose ops return when
    done."""
    device = torch.device(device)
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        return functools.partial(torch.cuda.synchronize, device)
    return functools.partial(torch.accelerator.synchronize, device)


def time_interleaved(
    steps: dict[str, Callable],
    label: str,
    repeats: int,
    warmup: int,
    synchronize: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds of each step, each run once per round; warm-up rounds discarded. The order rotates every
    round, so that none always runs right after the same other one. Each round is logged to stderr: a
    full-size run takes long enough to want to see it move. `synchronize` (`synchronizer`) runs before and
    after each step on an asynchronous device."""
    names = list(steps)
    times = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        seconds = {}
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if synchronize is None:
                start = time.perf_counter()
                steps[name]()
            else:
                synchronize()
                start = time.perf_counter()
                steps[name]()
                synchronize()
            seconds[name] = time.perf_counter() - start
        if round_index >= warmup:
            for name, elapsed in seconds.items():
                times[name].append(elapsed)
        kind = "warm-up" if round_index < warmup else "round"
        timings = ", ".join(f"{name} {elapsed:.4g} s" for name, elapsed in seconds.items())
        print(f"{label} {kind} {round_index + 1}/{warmup + repeats}: {timings}", file=sys.stderr, flush=True)
    return times


def max_output_differences(workload: Workload, dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Max |output - ours| of each peer: the contenders really compute the same function, to the dtype's
    `OUTPUT_TOLERANCE` of the scale of ours' output (a benchmark of different functions would mean nothing)."""
    ours, *peers = workload.contenders
    with torch.no_grad():
        expected = ours.forward().float()
        differences = {peer.name: (peer.forward().float() - expected).abs().max().item() for peer in peers}
        limit = OUTPUT_TOLERANCE[dtype] * expected.abs().max().item()
    disagreeing = {name: difference for name, difference in differences.items() if not difference <= limit}
    if disagreeing:
        raise RuntimeError(
            f"Expected every output within {limit:.3g} of ours ({OUTPUT_TOLERANCE[dtype]:g} of its largest value, "
            f"{dtype_name(dtype)}); got max |output - ours| of {disagreeing}."
        )
    return differences


# --- results ------------------------------------------------------------------------------------------


@dataclass
class Row:
    mode: str
    implementation: str
    median_s: float
    ours_over_this: float
    ours_over_this_quartiles: tuple[float, float]
    gflops: float
    peak_share: float
    times_s: list[float]


def paired_ratios(ours: list[float], other: list[float]) -> tuple[float, float, float]:
    """Quartiles (25%, median, 75%) over rounds of ours / other within the same round: the two ran seconds
    apart, so a load that drifts over the run (another job starting) cancels out, which a ratio of medians
    does not do; the spread between the quartiles says how far to trust the median on this machine."""
    ratios = [mine / theirs for mine, theirs in zip(ours, other)]
    if len(ratios) == 1:
        return ratios[0], ratios[0], ratios[0]
    low, median, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return low, median, high


def rows_for_mode(mode: str, times: dict[str, list[float]], flops: float, peak: float) -> list[Row]:
    rows = []
    for name, seconds in times.items():
        median = statistics.median(seconds)
        low, ratio, high = paired_ratios(times["ours"], seconds)
        rate = flops / median
        rows.append(Row(mode, name, median, ratio, (low, high), rate / 1e9, rate / peak, seconds))
    return rows


def ours_over_fastest_peer(rows: list[Row]) -> dict[str, dict]:
    """Per mode: ours / the fastest other implementation, the one with the largest paired ratio (<= 1 means
    ours is at least as fast as every peer), and which it is."""
    summary = {}
    for mode in dict.fromkeys(r.mode for r in rows):
        peers = [r for r in rows if r.mode == mode and r.implementation != "ours"]
        fastest = max(peers, key=lambda r: r.ours_over_this)
        summary[mode] = {"ratio": fastest.ours_over_this, "peer": fastest.implementation}
    return summary


def build_report(workload: Workload, args: argparse.Namespace, differences: dict, peaks: dict, rows: list[Row]):
    """Everything measured, as the JSON that `--json` writes."""
    return {
        "description": workload.description,
        "device": str(args.device),
        "dtype": dtype_name(args.dtype),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": {mode: peak / 1e9 for mode, peak in peaks.items()},
        "peak_size": args.peak_size,
        "forward_gflop": workload.forward_flops / 1e9,
        "max_output_differences": differences,
        "rows": [asdict(row) for row in rows],
        "ours_over_fastest_peer": ours_over_fastest_peer(rows),
    }


def format_table(rows: list[dict]) -> str:
    lines = [
        (
            f"{'mode':<18}{'implementation':<16}{'median s':>10}{'ours/this':>11}{'(quartiles)':>15}"
            f"{'GFLOP/s':>10}{'% of peak':>11}"
        )
    ]
    for r in rows:
        low, high = r["ours_over_this_quartiles"]
        lines.append(
            f"{r['mode']:<18}{r['implementation']:<16}{r['median_s']:>10.4g}{r['ours_over_this']:>11.3f}"
            f"{f'({low:.2f}-{high:.2f})':>15}{r['gflops']:>10.2f}{100 * r['peak_share']:>10.1f}%"
        )
    return "\n".join(lines)


def format_report(report: dict) -> str:
    differences = ", ".join(f"{name} {diff:.2g}" for name, diff in report["max_output_differences"].items())
    summary = ", ".join(
        f"{mode} {s['ratio']:.3f} (vs {s['peer']})" for mode, s in report["ours_over_fastest_peer"].items()
    )
    size, dtype = report["peak_size"], report["dtype"]
    peaks = ", ".join(f"{mode} {peak:.2f}" for mode, peak in report["matmul_peak_gflops"].items())
    device = "" if report["device"] == "cpu" else f" on {report['device']}"
    return "\n".join(
        [
            (
                f"{report['description']}, {dtype}{device}, batch {report['batch_size']}, {report['repeats']} "
                f"repeats (+{report['warmup']} warm-up), interleaved"
            ),
            f"torch threads: {report['threads']}",
            f"matmul peak ({size}x{size} {dtype}, median over the rounds): {peaks} GFLOP/s",
            f"forward: {report['forward_gflop']:.4g} GFLOP (forward+backward: 3x)",
            f"max |output - ours|: {differences}",
            "",
            format_table(report["rows"]),
            "",
            f"ours / fastest peer: {summary}",
        ]
    )


def add_attention_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--attn-implementation",
        default="sdpa",
        help="ours' attention (eager, sdpa, flex_attention, flash_attention_2); transformers' peer takes the same "
        "where its class has it, else sdpa. Default: %(default)s.",
    )


def peer_attention(model_class: type, implementation: str) -> str:
    """The attention transformers' `model_class` runs beside ours running `implementation`: the same where the
    class has it, else sdpa."""
    supported = {"eager": True, "sdpa": model_class._supports_sdpa, "flex_attention": model_class._supports_flex_attn}
    flash = implementation.startswith("flash") and model_class._supports_flash_attn
    return implementation if supported.get(implementation, flash) else "sdpa"


def load_quietly(model_class: type, folder: str, **kwargs) -> nn.Module:
    """`from_pretrained` without the warning that our model type is not the class's: that is by design,
    the checkpoint layouts are shared."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        return model_class.from_pretrained(folder, **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)


# --- the command line ---------------------------------------------------------------------------------

# model name on the command line -> its module in hubformers.scripts
BENCHMARKS = {
    "vit": "benchmark_vit",
    "swin": "benchmark_swin",
    "longformer": "benchmark_longformer",
    "clip": "benchmark_clip",
    "vae": "benchmark_vae",
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (each runs every implementation)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--peak-size", type=int, default=2048, help="side of the matmul that measures the peak")
    parser.add_argument("--json", type=Path, help="also write the results here")
    add_device_arguments(parser)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=torch.device, default="cpu", help="where to run: cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", type=dtype_argument, default="float32", help=f"one of {', '.join(DTYPES)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plugins(parser, BENCHMARKS, "MODEL", add_common_arguments)


def run_modes(workload: Workload, args: argparse.Namespace) -> tuple[list[Row], dict[str, float]]:
    """The rows of every mode, and the matmul peak (FLOP/s) measured alongside each."""
    rows, peaks = [], {}
    for mode in workload.modes:
        step, training, flop_multiple = MODES[mode]
        for contender in workload.contenders:
            contender.model.train(training)
        steps = {contender.name: functools.partial(step, contender) for contender in workload.contenders}
        steps[PEAK] = matmul_step(args.peak_size, args.device, args.dtype)
        times = time_interleaved(steps, mode, args.repeats, args.warmup, synchronizer(args.device))
        peaks[mode] = 2 * args.peak_size**3 / statistics.median(times.pop(PEAK))
        rows += rows_for_mode(mode, times, flop_multiple * workload.forward_flops, peaks[mode])
    return rows, peaks


def prepare(args: argparse.Namespace) -> tuple[Workload, dict[str, float]]:
    """The workload, its contenders in eval mode, and the max |output - ours| of each peer (checked)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.type == "cuda" and args.dtype == torch.float32:
        torch.backends.cuda.matmul.fp32_precision = torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.manual_seed(0)
    workload = args.plugin.workload(args)
    for contender in workload.contenders:
        contender.model.eval()
    return workload, max_output_differences(workload, args.dtype)


def main(args: argparse.Namespace) -> None:
    workload, differences = prepare(args)
    rows, peaks = run_modes(workload, args)
    report = build_report(workload, args, differences, peaks, rows)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


# --- agreement on a device: tiny models, every attention implementation ----------------------------------

TINY = {
    "vit": [
        "--model", "vit_tiny_patch16_224", "--image-size", "32",
        "--model-args", '{"embed_dim": 32, "depth": 2, "num_heads": 4, "patch_size": 8, "num_classes": 3}',
    ],
    "swin": [
        "--model-args",
        (
            '{"embed_dim": 32, "depths": [2, 2], "num_heads": [2, 4], "window_size": 4, "img_size": 32, '
            '"patch_size": 2, "num_classes": 3}'
        ),
    ],
    "clip": [
        "--model-args",
        (
            '{"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 12, '
            '"patch_size": 8}, "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, '
            '"layers": 2}}'
        ),
    ],
    "vae": ["--channels", "8,16", "--layers-per-block", "1", "--image-size", "16"],
    "longformer": [
        "--length", "128", "--attention-window", "32",
        "--config", (
            '{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, '
            '"vocab_size": 500}'
        ),
    ],
}  # fmt: skip
TINY_COMMON = ["--batch-size", "2", "--peak-size", "64"]

# ours' attention implementations per model (Longformer runs its own band attention)
ATTENTION = {
    "vit": ("eager", "sdpa", "flex_attention", "flash_attention_2"),
    "swin": ("eager", "sdpa"),
    "clip": ("eager", "sdpa", "flex_attention", "flash_attention_2"),
    "vae": ("eager", "sdpa"),
    "longformer": (None,),
}
AGREEMENT_TOLERANCE = 1e-4  # max |output - ours| in float32


def runs_attention(implementation: str | None, device: torch.device) -> bool:
    """Whether to check `implementation` on `device`: flex_attention where it compiles to GPU kernels (its CPU
    compile takes minutes for the checks), flash attention where its package is installed, on CUDA."""
    if implementation == "flex_attention":
        return device.type == "cuda"
    if implementation == "flash_attention_2":
        return device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None
    return True


def agreement_case(model: str, attention: str | None, device: torch.device) -> dict:
    """The tiny `model`'s contenders on `device` with ours on `attention`: float32, the max |output - ours| of
    each peer within AGREEMENT_TOLERANCE; flash attention (half precision only) in bfloat16 at its tolerance."""
    dtype = "bfloat16" if attention == "flash_attention_2" else "float32"
    argv = [model, *TINY[model], *TINY_COMMON, "--device", str(device), "--dtype", dtype]
    argv += ["--attn-implementation", attention] if attention else []
    parser = argparse.ArgumentParser(prog="hubformers benchmark")
    add_arguments(parser)
    try:
        _, differences = prepare(parser.parse_args(argv))
    except (RuntimeError, ValueError, TypeError, ImportError, AssertionError) as error:  # reported with the rest
        return {"dtype": dtype, "passed": False, "error": f"{type(error).__name__}: {error}"}
    passed = dtype != "float32" or max(differences.values()) <= AGREEMENT_TOLERANCE
    return {"dtype": dtype, "passed": passed, "max_output_differences": differences}


def agreement(device: torch.device, models: list[str]) -> dict[str, dict]:
    results = {}
    for model in models:
        for attention in filter(lambda a: runs_attention(a, device), ATTENTION[model]):
            name = f"{model} {attention or 'default'}"
            results[name] = result = agreement_case(model, attention, device)
            detail = result.get("error") or ", ".join(
                f"{peer} {difference:.2g}" for peer, difference in result["max_output_differences"].items()
            )
            print(f"{name} ({result['dtype']}): {'ok' if result['passed'] else 'FAILED'}: {detail}", flush=True)
    return results


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubformers.scripts.benchmark", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("agreement", help="check the contenders agree on tiny models, on a device")
    check.add_argument("--device", type=torch.device, default="cuda")
    check.add_argument("--models", nargs="+", choices=TINY, default=list(TINY))
    check.add_argument("--json", type=Path, help="also write the results here")
    tiny = commands.add_parser("tiny", help="print a tiny model's benchmark arguments, one per line")
    tiny.add_argument("model", choices=TINY)
    args = parser.parse_args(argv)
    if args.command == "tiny":
        print("\n".join(TINY[args.model] + TINY_COMMON))
        return 0
    results = agreement(args.device, args.models)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(result["passed"] for result in results.values()) else 1


if __name__ == "__main__":
    from hubformers.scripts import benchmark  # the module the plug-ins import, not a second copy

    sys.exit(benchmark.cli())
