"""`hubformers visualize-attention`: where a vision transformer's class token looks, drawn over an image.

The picture holds the image, the attention rollout of the class token (Abnar & Zuidema, 2020) blended over
it, and each layer's class-token attention (the mean over heads, or every head with `--per-head`); with a
classifier, the title names the predicted label. `--save-arrays` also writes the maps to an .npz file.

    hubformers visualize-attention cat.jpg --model ./vit-cats --out cat-attention.png
"""

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

import hubformers  # noqa: F401  (registers hubformers' models and processors with the Auto classes)
from hubformers.attention_maps import HEAD_FUSIONS, AttentionMaps, forward_with_attentions, patch_grid
from hubformers.configuration_vit import to_pair

LAYERS_PER_ROW = 6  # layer panels per row of the picture when heads are averaged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="the image file to look at")
    parser.add_argument("--model", required=True, help="folder (or Hub id) with the model and its image processor")
    parser.add_argument("--out", required=True, type=Path, help="the picture to write (.png)")
    parser.add_argument("--head-fusion", choices=HEAD_FUSIONS, default="mean", help="how rollout fuses the heads")
    parser.add_argument(
        "--discard-ratio", type=float, default=0.0, help="share of the lowest attentions rollout drops, in [0, 1)"
    )
    parser.add_argument("--per-head", action="store_true", help="draw every head of every layer, not their mean")
    parser.add_argument("--save-arrays", type=Path, help="also save the maps of this image to this .npz file")


def load_model(model_dir: str) -> torch.nn.Module:
    """The classifier when the checkpoint has one (its label goes in the title), else the base model. Eager
    attention, so that transformers' own models return attention maps too (hubformers' always do)."""
    config = AutoConfig.from_pretrained(model_dir)
    has_classifier = any(name.endswith("ForImageClassification") for name in config.architectures or [])
    auto_class = AutoModelForImageClassification if has_classifier else AutoModel
    return auto_class.from_pretrained(model_dir, attn_implementation="eager")


def compute_maps(model, processor, image: Image.Image, args: argparse.Namespace) -> tuple[AttentionMaps, str | None]:
    """The image's attention maps and, for a classifier, its predicted label."""
    pixel_values = processor(images=image, return_tensors="pt").pixel_values.to(model.device, model.dtype)
    # a processor may resize to another size than the model was trained at
    resized = tuple(pixel_values.shape[-2:]) != to_pair(model.config.image_size)
    outputs = forward_with_attentions(model, pixel_values, **({"interpolate_pos_encoding": True} if resized else {}))
    grid = patch_grid(model.config, pixel_values)
    maps = AttentionMaps.from_attentions(outputs.attentions, grid, args.head_fusion, args.discard_ratio)
    logits = getattr(outputs, "logits", None)
    label = None if logits is None else model.config.id2label[int(logits[0].argmax())]
    return maps, label


def upsample(heat_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (grid_h, grid_w) map resized bilinearly to size (height, width) and scaled to a peak of 1."""
    resized = F.interpolate(torch.from_numpy(heat_map)[None, None], size=size, mode="bilinear", align_corners=False)
    peak = resized.max()
    return (resized[0, 0] / peak if peak > 0 else resized[0, 0]).numpy()


def layer_panels(cls_maps: np.ndarray, per_head: bool) -> tuple[list[tuple[np.ndarray, str]], tuple[int, int]]:
    """(layers, heads, grid_h, grid_w) class-token maps -> the (map, title) panels to draw, row-major, and the
    (rows, columns) they fill: layer x head, or the mean over heads in rows of LAYERS_PER_ROW layers."""
    num_layers, num_heads = cls_maps.shape[:2]
    if per_head:
        panels = [
            (cls_maps[layer, head], f"layer {layer + 1} head {head + 1}")
            for layer in range(num_layers)
            for head in range(num_heads)
        ]
        return panels, (num_layers, num_heads)
    panels = [(layer_map, f"layer {layer + 1}") for layer, layer_map in enumerate(cls_maps.mean(axis=1))]
    columns = min(num_layers, LAYERS_PER_ROW)
    return panels, (math.ceil(num_layers / columns), columns)


def draw(image: Image.Image, maps: AttentionMaps, per_head: bool, label: str | None) -> Figure:
    """The image, the rollout blended over it, and the per-layer class-token maps below."""
    panels, (rows, columns) = layer_panels(maps.cls_maps[0], per_head)
    figure = Figure(figsize=(max(8.0, 1.6 * columns), 4.5 + 1.6 * rows), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[4.5, 1.6 * rows])

    image_axes, rollout_axes = top.subplots(1, 2)
    image_axes.imshow(image)
    image_axes.set_title("image")
    rollout_axes.imshow(image)
    rollout_axes.imshow(upsample(maps.rollout_map[0], (image.height, image.width)), cmap="jet", alpha=0.5)
    rollout_axes.set_title("attention rollout")

    # patch cells as tall as wide in the image, not in the (often square) resized input the model saw
    grid_h, grid_w = maps.grid
    cell_aspect = (image.height / grid_h) / (image.width / grid_w)
    # a last row that isn't full keeps its spare axes, blank once the axes are switched off
    for axes, (panel, title) in zip(bottom.subplots(rows, columns, squeeze=False).flat, panels):
        axes.imshow(panel, cmap="inferno", aspect=cell_aspect)
        axes.set_title(title, fontsize=7)
    for axes in figure.get_axes():
        axes.set_axis_off()
    bottom.suptitle("class-token attention per " + ("layer and head" if per_head else "layer (mean over heads)"))
    if label is not None:
        figure.suptitle(f"predicted: {label}")
    return figure


def save_arrays(path: Path, maps: AttentionMaps) -> None:
    """The one image's maps, without the batch axis."""
    np.savez(
        path,
        per_layer=maps.per_layer[0],
        cls_maps=maps.cls_maps[0],
        rollout=maps.rollout[0],
        rollout_map=maps.rollout_map[0],
        grid=np.array(maps.grid),
    )


def main(args: argparse.Namespace) -> None:
    model = load_model(args.model)
    processor = AutoImageProcessor.from_pretrained(args.model)
    image = Image.open(args.image).convert("RGB")
    maps, label = compute_maps(model, processor, image, args)
    draw(image, maps, args.per_head, label).savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    if args.save_arrays is not None:
        save_arrays(args.save_arrays, maps)
        print(f"wrote {args.save_arrays}")
