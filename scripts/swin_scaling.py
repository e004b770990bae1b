"""Linear cost, shown: FLOPs and time per pixel of Swin-T and ViT-B/16 as the image side grows from 224 to 896.

Swin attends inside fixed windows, so its cost grows with the number of pixels (linear); ViT attends over all
patches, so its attention grows with their square (Swin paper, Section 3.2, Eq. 1-2). FLOPs are counted by
`torch.utils.flop_counter` on one forward of a model on the meta device (eager attention, so the attention
products are plain matmuls); time is the median of interleaved forward passes in fp32. The table (printed,
and as JSON) and a PNG plot of both, per pixel and relative to 224x224, go to `--output-dir`.

    python -m hubformers.scripts.swin_scaling --output-dir docs/
"""

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from hubformers import SwinConfig, SwinModel, ViTConfig, ViTModel

SIDES = (224, 320, 448, 640, 896)


def models(device: str = "cpu") -> dict[str, torch.nn.Module]:
    """Swin-T and ViT-B/16 (random weights: cost does not depend on them); on the "meta" device nothing is
    computed, which is all FLOP counting needs."""
    with torch.device(device):
        swin = SwinModel(SwinConfig(drop_path_rate=0.0), add_pooling_layer=False).eval()
        vit = ViTModel(ViTConfig(), add_pooling_layer=False).eval()
    return {"Swin-T": swin, "ViT-B/16": vit}


def forward(name: str, model: torch.nn.Module, side: int):
    pixel_values = torch.randn(1, 3, side, side, device=next(model.parameters()).device)
    extra = {"interpolate_pos_encoding": True} if name.startswith("ViT") else {}
    return lambda: model(pixel_values, **extra)


def count_flops(step) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        step()
    return counter.get_total_flops()


def median_time(step, repeats: int) -> float:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure(sides: tuple[int, ...], repeats: int) -> list[dict]:
    """FLOPs (eager attention: the attention products are plain matmuls) and, with `repeats`, time (sdpa, as
    the models run by default) of one image per side."""
    rows = []
    timed = models() if repeats else {}
    for name, model in models("meta").items():
        model.set_attn_implementation("eager")
        for side in sides:
            rows.append(dict(model=name, side=side, gflops=count_flops(forward(name, model, side)) / 1e9))
            if repeats:
                step = forward(name, timed[name], side)
                step()  # warm-up
                rows[-1]["seconds"] = median_time(step, repeats)
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"] and r["side"] == sides[0])
        pixels = (row["side"] / sides[0]) ** 2
        row["flops_per_pixel_vs_224"] = row["gflops"] / base["gflops"] / pixels
        if repeats:
            row["time_per_pixel_vs_224"] = row["seconds"] / base["seconds"] / pixels
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| model | side | GFLOPs | FLOPs/pixel vs 224 | time (s) | time/pixel vs 224 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        timing = f"{r['seconds']:.3f} | {r['time_per_pixel_vs_224']:.2f}" if "seconds" in r else "- | -"
        lines.append(
            f"| {r['model']} | {r['side']} | {r['gflops']:.1f} | {r['flops_per_pixel_vs_224']:.2f} | {timing} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (flops_axis, time_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        sides = [r["side"] for r in mine]
        flops_axis.plot(sides, [r["flops_per_pixel_vs_224"] for r in mine], "o-", label=name)
        if "seconds" in mine[0]:
            time_axis.plot(sides, [r["time_per_pixel_vs_224"] for r in mine], "o-", label=name)
    for axis, title in ((flops_axis, "FLOPs per pixel"), (time_axis, "CPU time per pixel")):
        axis.axhline(1.0, color="grey", lw=0.8, ls="--")
        axis.set(title=f"{title}, relative to 224x224", xlabel="image side (pixels)", xticks=sides)
        if axis.lines[1:]:  # more than the reference line: a curve was drawn
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/swin-scaling"))
    parser.add_argument("--sides", type=int, nargs="+", default=list(SIDES))
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per size; 0 counts FLOPs only")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = measure(tuple(args.sides), args.repeats)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "swin_scaling.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.output_dir / "swin_scaling.png")
    print(format_table(rows))
    print(f"wrote {args.output_dir / 'swin_scaling.json'} and {args.output_dir / 'swin_scaling.png'}")


if __name__ == "__main__":
    main()
