"""`hubformers visualize-attention`: where a vision transformer's class token looks, drawn over an image.

The picture holds the image, the attention rollout of the class token (Abnar & Zuidema, 2020) blended over
it, and each layer's class-token attention (the mean over heads, or every head with `--per-head`); with a
classifier, the title names the predicted label. `--save-arrays` also writes the maps to an .npz file.

A Swin model (hubformers' or transformers') has no class token: the rollout runs through its windows and patch
mergings to the mean of the final tokens (what its classifier pools), and each block's panel shows where one
query token attends on that block's map (`--query Y X`, fractions of the image; the centre by default, marked
+), which shows the windows and their shift. Its arrays: rollout, rollout_map, grid, query, layouts (stage,
grid_h, grid_w, window, shift per block) and query_maps_0, query_maps_1, ... (heads, h, w) per block.

    hubformers visualize-attention cat.jpg --model ./vit-cats --out cat-attention.png
    hubformers visualize-attention cat.jpg --model ./swin-cats --out cat-attention.png --query 0.3 0.6
"""

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

import hubformers  # noqa: F401  (registers hubformers' models and processors with the Auto classes)
from hubformers.attention_maps import (
    HEAD_FUSIONS,
    AttentionMaps,
    SwinAttentionMaps,
    check_query,
    forward_with_attentions,
    forward_with_block_attentions,
    is_swin,
    patch_grid,
    query_patch,
    stage_query,
    swin_layouts_for,
)
from hubformers.configuration_utils import to_pair

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
    parser.add_argument(
        "--query",
        nargs=2,
        type=float,
        default=(0.5, 0.5),
        metavar=("Y", "X"),
        help="Swin: the point whose attention the layer panels show, as fractions of the image's height and width",
    )


def load_model(model_dir: str) -> torch.nn.Module:
    """The classifier when the checkpoint has one (its label goes in the title), else the base model. Eager
    attention, so that transformers' own models return attention maps too (hubformers' always do)."""
    config = AutoConfig.from_pretrained(model_dir)
    has_classifier = any(name.endswith("ForImageClassification") for name in config.architectures or [])
    auto_class = AutoModelForImageClassification if has_classifier else AutoModel
    return auto_class.from_pretrained(model_dir, attn_implementation="eager")


def vit_maps(model, pixel_values: torch.Tensor, args: argparse.Namespace, **model_kwargs):
    """A ViT-like model's output and class-token maps."""
    outputs = forward_with_attentions(model, pixel_values, **model_kwargs)
    grid = patch_grid(model.config, pixel_values)
    return outputs, AttentionMaps.from_attentions(outputs.attentions, grid, args.head_fusion, args.discard_ratio)


def swin_maps(model, pixel_values: torch.Tensor, args: argparse.Namespace, **model_kwargs):
    """A Swin model's output and maps, for the query point `args.query` (the centre when absent)."""
    query = query_patch(getattr(args, "query", (0.5, 0.5)), tuple(pixel_values.shape[-2:]), model.config.patch_size)
    outputs, attentions = forward_with_block_attentions(model, pixel_values, **model_kwargs)
    layouts = swin_layouts_for(model, pixel_values)
    return outputs, SwinAttentionMaps.from_attentions(attentions, layouts, query, args.head_fusion, args.discard_ratio)


def compute_maps(
    model, processor, image: Image.Image, args: argparse.Namespace
) -> tuple[AttentionMaps | SwinAttentionMaps, str | None]:
    """The image's attention maps and, for a classifier, its predicted label."""
    pixel_values = processor(images=image, return_tensors="pt").pixel_values.to(model.device, model.dtype)
    # a processor may resize to another size than the model was trained at
    resized = tuple(pixel_values.shape[-2:]) != to_pair(model.config.image_size)
    model_maps = swin_maps if is_swin(model.config) else vit_maps
    outputs, maps = model_maps(model, pixel_values, args, **({"interpolate_pos_encoding": True} if resized else {}))
    logits = getattr(outputs, "logits", None)
    label = None if logits is None else model.config.id2label[int(logits[0].argmax())]
    return maps, label


def upsample(heat_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (grid_h, grid_w) map resized bilinearly to size (height, width) and scaled to a peak of 1."""
    resized = F.interpolate(torch.from_numpy(heat_map)[None, None], size=size, mode="bilinear", align_corners=False)
    peak = resized.max()
    return (resized[0, 0] / peak if peak > 0 else resized[0, 0]).numpy()


@dataclass
class Picture:
    """What `draw` needs of one image's maps: the rollout over the first patch grid, each layer's
    (heads, h, w) maps with its name and the cell to mark on it (or None), and what the layer maps show."""

    rollout_map: np.ndarray
    layer_maps: list[np.ndarray]
    layer_names: list[str]
    marks: list[tuple[int, int] | None]
    subject: str


def vit_picture(maps: AttentionMaps) -> Picture:
    layer_maps = list(maps.cls_maps[0])
    names = [f"layer {layer + 1}" for layer in range(len(layer_maps))]
    return Picture(maps.rollout_map[0], layer_maps, names, [None] * len(names), "class-token attention")


def swin_picture(maps: SwinAttentionMaps) -> Picture:
    """Blocks named "stage 2.3" (the third block of stage 2); the query token marked on each block's map."""
    names, blocks = [], {}
    for layout in maps.layouts:
        blocks[layout.stage] = blocks.get(layout.stage, 0) + 1
        names.append(f"stage {layout.stage + 1}.{blocks[layout.stage]}" + (" (shifted)" if layout.shift else ""))
    marks = [stage_query(maps.query, layout.stage) for layout in maps.layouts]
    layer_maps = [query_map[0] for query_map in maps.query_maps]
    return Picture(maps.rollout_map[0], layer_maps, names, marks, "attention of the query token (+)")


def layer_panels(picture: Picture, per_head: bool) -> tuple[list[tuple | None], tuple[int, int]]:
    """The (map, title, mark) panels to draw, row-major, and the (rows, columns) they fill: layer x head (None
    fills the row of a layer with fewer heads), or the mean over heads in rows of LAYERS_PER_ROW layers."""
    layers = list(zip(picture.layer_maps, picture.layer_names, picture.marks))
    if per_head:
        columns = max(len(heads) for heads in picture.layer_maps)
        panels = []
        for heads, name, mark in layers:
            panels += [(head_map, f"{name} head {head + 1}", mark) for head, head_map in enumerate(heads)]
            panels += [None] * (columns - len(heads))
        return panels, (len(layers), columns)
    panels = [(heads.mean(axis=0), name, mark) for heads, name, mark in layers]
    columns = min(len(layers), LAYERS_PER_ROW)
    return panels, (math.ceil(len(layers) / columns), columns)


def draw(image: Image.Image, picture: Picture, per_head: bool, label: str | None) -> Figure:
    """The image, the rollout blended over it, and the per-layer maps below."""
    panels, (rows, columns) = layer_panels(picture, per_head)
    figure = Figure(figsize=(max(8.0, 1.6 * columns), 4.5 + 1.6 * rows), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[4.5, 1.6 * rows])

    image_axes, rollout_axes = top.subplots(1, 2)
    image_axes.imshow(image)
    image_axes.set_title("image")
    rollout_axes.imshow(image)
    rollout_axes.imshow(upsample(picture.rollout_map, (image.height, image.width)), cmap="jet", alpha=0.5)
    rollout_axes.set_title("attention rollout")

    # a last row that isn't full keeps its spare axes (and so do None panels), blank once the axes are switched off
    for axes, panel in zip(bottom.subplots(rows, columns, squeeze=False).flat, panels):
        if panel is not None:
            draw_panel(axes, image, *panel)
    for axes in figure.get_axes():
        axes.set_axis_off()
    bottom.suptitle(f"{picture.subject} per " + ("layer and head" if per_head else "layer (mean over heads)"))
    if label is not None:
        figure.suptitle(f"predicted: {label}")
    return figure


def draw_panel(axes, image: Image.Image, panel: np.ndarray, title: str, mark: tuple[int, int] | None) -> None:
    """One (h, w) map, its cells as tall as wide in the image, not in the (often square) resized input the model
    saw; `mark` = (row, col) gets a +."""
    cell_aspect = (image.height / panel.shape[0]) / (image.width / panel.shape[1])
    axes.imshow(panel, cmap="inferno", aspect=cell_aspect)
    if mark is not None:
        axes.plot(mark[1], mark[0], marker="+", color="cyan", markersize=6)
    axes.set_title(title, fontsize=7)


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


def save_swin_arrays(path: Path, maps: SwinAttentionMaps) -> None:
    """The one image's Swin maps, without the batch axis; query_maps_{i} is block i's (heads, h, w)."""
    np.savez(
        path,
        rollout=maps.rollout[0],
        rollout_map=maps.rollout_map[0],
        grid=np.array(maps.grid),
        query=np.array(maps.query),
        layouts=np.array([(layout.stage, *layout.grid, layout.window, layout.shift) for layout in maps.layouts]),
        **{f"query_maps_{block}": query_map[0] for block, query_map in enumerate(maps.query_maps)},
    )


def main(args: argparse.Namespace) -> None:
    check_query(args.query)
    model = load_model(args.model)
    processor = AutoImageProcessor.from_pretrained(args.model)
    image = Image.open(args.image).convert("RGB")
    maps, label = compute_maps(model, processor, image, args)
    swin = isinstance(maps, SwinAttentionMaps)
    draw(image, swin_picture(maps) if swin else vit_picture(maps), args.per_head, label).savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    if args.save_arrays is not None:
        (save_swin_arrays if swin else save_arrays)(args.save_arrays, maps)
        print(f"wrote {args.save_arrays}")
