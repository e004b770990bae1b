"""`hubformers benchmark MODEL`: time hubformers against the reference implementations on the same weights.

All implementations run in this one process on the same inputs, interleaved (ours, transformers, timm,
then again in a rotated order), so that the machine's drift (other jobs, clocks: 2x swings on a shared
CPU) hits each alike. The table gives each one's median seconds, the ratio of ours to it (the median of
per-round ratios, with their quartiles), its GFLOP/s (matmul and patch-convolution FLOPs counted
analytically; the backward counted as twice the forward) and its share of a 2048x2048 float32 matmul's
rate measured in the same rounds.

Each model is a sub-command with its own arguments (`hubformers benchmark vit`); a new one adds an entry
to `BENCHMARKS` with a function that builds its `Workload`.
"""

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from torch import nn

from hubformers.configuration_vit import ViTConfig, to_pair
from hubformers.scripts.convert import convert_timm_vit, import_timm, json_object

# --- what is timed ------------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    model: nn.Module
    logits: Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Workload:
    """Implementations of one model on the same weights (ours first), their inputs, and its forward FLOPs."""

    description: str
    contenders: list[Contender]
    inputs: torch.Tensor
    labels: torch.Tensor
    forward_flops: float


def forward_step(contender: Contender, workload: Workload) -> None:
    with torch.no_grad():
        contender.logits(workload.inputs)


def train_step(contender: Contender, workload: Workload) -> None:
    contender.model.zero_grad(set_to_none=True)
    F.cross_entropy(contender.logits(workload.inputs), workload.labels).backward()


# mode -> (step, train mode, FLOPs as a multiple of the forward's: the backward takes two matmuls per one)
MODES = {"forward": (forward_step, False, 1), "forward+backward": (train_step, True, 3)}


# The matmul that measures the machine's peak runs as one more step of every round, so that it sees the
# same load as the models (a peak measured once, at a quieter moment, gave "130% of peak").
PEAK = "matmul peak"


def matmul_step(size: int) -> Callable[[], torch.Tensor]:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return lambda: torch.mm(a, b)


def time_interleaved(steps: dict[str, Callable], label: str, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each step, each run once per round; warm-up rounds discarded. The order rotates every
    round, so that none always runs right after the same other one. Each round is logged to stderr: a
    full-size run takes long enough to want to see it move."""
    names = list(steps)
    times = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        seconds = {}
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            steps[name]()
            seconds[name] = time.perf_counter() - start
        if round_index >= warmup:
            for name, elapsed in seconds.items():
                times[name].append(elapsed)
        kind = "warm-up" if round_index < warmup else "round"
        timings = ", ".join(f"{name} {elapsed:.4g} s" for name, elapsed in seconds.items())
        print(f"{label} {kind} {round_index + 1}/{warmup + repeats}: {timings}", file=sys.stderr, flush=True)
    return times


def max_logit_differences(workload: Workload) -> dict[str, float]:
    """Max |logits - ours| of each peer on one image: the contenders really compute the same function."""
    ours, *peers = workload.contenders
    with torch.no_grad():
        expected = ours.logits(workload.inputs[:1])
        return {peer.name: (peer.logits(workload.inputs[:1]) - expected).abs().max().item() for peer in peers}


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
    for mode in MODES:
        peers = [r for r in rows if r.mode == mode and r.implementation != "ours"]
        fastest = max(peers, key=lambda r: r.ours_over_this)
        summary[mode] = {"ratio": fastest.ours_over_this, "peer": fastest.implementation}
    return summary


def build_report(workload: Workload, args: argparse.Namespace, differences: dict, peaks: dict, rows: list[Row]):
    """Everything measured, as the JSON that `--json` writes."""
    return {
        "description": workload.description,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": {mode: peak / 1e9 for mode, peak in peaks.items()},
        "peak_size": args.peak_size,
        "forward_gflop": workload.forward_flops / 1e9,
        "max_logit_differences": differences,
        "rows": [asdict(row) for row in rows],
        "ours_over_fastest_peer": ours_over_fastest_peer(rows),
    }


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'mode':<18}{'implementation':<16}{'median s':>10}{'ours/this':>11}{'(quartiles)':>15}"
        f"{'GFLOP/s':>10}{'% of peak':>11}"
    ]
    for r in rows:
        low, high = r["ours_over_this_quartiles"]
        lines.append(
            f"{r['mode']:<18}{r['implementation']:<16}{r['median_s']:>10.4g}{r['ours_over_this']:>11.3f}"
            f"{f'({low:.2f}-{high:.2f})':>15}{r['gflops']:>10.2f}{100 * r['peak_share']:>10.1f}%"
        )
    return "\n".join(lines)


def format_report(report: dict) -> str:
    differences = ", ".join(f"{name} {diff:.2g}" for name, diff in report["max_logit_differences"].items())
    summary = ", ".join(
        f"{mode} {s['ratio']:.3f} (vs {s['peer']})" for mode, s in report["ours_over_fastest_peer"].items()
    )
    size = report["peak_size"]
    peaks = ", ".join(f"{mode} {peak:.2f}" for mode, peak in report["matmul_peak_gflops"].items())
    return "\n".join(
        [
            f"{report['description']}, float32, batch {report['batch_size']}, {report['repeats']} repeats "
            f"(+{report['warmup']} warm-up), interleaved",
            f"torch threads: {report['threads']}",
            f"matmul peak ({size}x{size} float32, median over the rounds): {peaks} GFLOP/s",
            f"forward: {report['forward_gflop']:.4g} GFLOP (forward+backward: 3x)",
            f"max |logits - ours|: {differences}",
            "",
            format_table(report["rows"]),
            "",
            f"ours / fastest peer: {summary}",
        ]
    )


# --- ViT ----------------------------------------------------------------------------------------------


def vit_forward_flops(config: ViTConfig, batch_size: int) -> float:
    """2 x the multiply-adds of the patch convolution, the projections, the attention products and the
    head on the class token; norms, softmax and GELU are left out (a few % of the time, no matmul)."""
    (grid_h, grid_w), (patch_h, patch_w) = config.grid_size, to_pair(config.patch_size)
    patches, width = grid_h * grid_w, config.hidden_size
    tokens = patches + 1
    embedding = patches * config.num_channels * patch_h * patch_w * width
    projections = tokens * (4 * width * width + 2 * width * config.intermediate_size)
    attention = 2 * tokens * tokens * width  # q k^T and weights @ v
    head = width * config.num_labels
    return 2.0 * batch_size * (embedding + config.num_hidden_layers * (projections + attention) + head)


def load_quietly(model_class: type, folder: str, **kwargs) -> nn.Module:
    """`from_pretrained` without the warning that our model type is not the class's: that is by design,
    the checkpoint layouts are shared."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        return model_class.from_pretrained(folder, **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)


def vit_workload(args: argparse.Namespace) -> Workload:
    """A timm ViT with random weights, converted to ours, ours saved and loaded by transformers' ViT (the
    checkpoint layout is shared): three implementations of the same weights, all on sdpa attention."""
    model_args = {**args.model_args, **({"img_size": args.image_size} if args.image_size else {})}
    timm_model = import_timm().create_model(args.model, pretrained=False, **model_args)
    ours = convert_timm_vit(timm_model)
    ours.set_attn_implementation("sdpa")
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        reference = load_quietly(transformers.ViTForImageClassification, folder, attn_implementation="sdpa")
    config = ours.config
    inputs = torch.randn(args.batch_size, config.num_channels, *to_pair(config.image_size))
    return Workload(
        description=f"ViT {args.model} {tuple(inputs.shape[1:])}",
        contenders=[
            Contender("ours", ours, lambda x: ours(x).logits),
            Contender("transformers", reference, lambda x: reference(x).logits),
            Contender("timm", timm_model, timm_model),
        ],
        inputs=inputs,
        labels=torch.randint(0, config.num_labels, (args.batch_size,)),
        forward_flops=vit_forward_flops(config, args.batch_size),
    )


def add_vit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="vit_base_patch16_224", help="timm ViT whose architecture all three implementations take"
    )
    parser.add_argument("--image-size", type=int, help="input side (default: the model's)")
    parser.add_argument(
        "--model-args",
        type=json_object,
        default={},
        help='extra timm.create_model arguments as a JSON object, e.g. \'{"embed_dim": 32, "depth": 2}\'',
    )


# --- the command line ---------------------------------------------------------------------------------

# Each model: (help, add its arguments, build its workload).
BENCHMARKS = {
    "vit": ("ViT: ours vs transformers' ViT vs timm's VisionTransformer.", add_vit_arguments, vit_workload),
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (each runs every implementation)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--peak-size", type=int, default=2048, help="side of the matmul that measures the peak")
    parser.add_argument("--json", type=Path, help="also write the results here")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = parser.add_subparsers(dest="benchmark_model", required=True, metavar="MODEL")
    for name, (help_text, add_model_arguments, build_workload) in BENCHMARKS.items():
        model = models.add_parser(name, help=help_text, description=help_text)
        add_common_arguments(model)
        add_model_arguments(model)
        model.set_defaults(build_workload=build_workload)


def run_modes(workload: Workload, args: argparse.Namespace) -> tuple[list[Row], dict[str, float]]:
    """The rows of every mode, and the matmul peak (FLOP/s) measured alongside each."""
    rows, peaks = [], {}
    for mode, (step, training, flop_multiple) in MODES.items():
        for contender in workload.contenders:
            contender.model.train(training)
        steps = {contender.name: functools.partial(step, contender, workload) for contender in workload.contenders}
        steps[PEAK] = matmul_step(args.peak_size)
        times = time_interleaved(steps, mode, args.repeats, args.warmup)
        peaks[mode] = 2 * args.peak_size**3 / statistics.median(times.pop(PEAK))
        rows += rows_for_mode(mode, times, flop_multiple * workload.forward_flops, peaks[mode])
    return rows, peaks


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    workload = args.build_workload(args)
    for contender in workload.contenders:
        contender.model.eval()
    differences = max_logit_differences(workload)
    rows, peaks = run_modes(workload, args)
    report = build_report(workload, args, differences, peaks, rows)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
