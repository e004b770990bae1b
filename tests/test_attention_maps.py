"""Attention maps: rollout against a loop-by-loop oracle and its defining properties, class-token maps in the
right place (a hand-built ViT that looks at one patch), sdpa = eager, any resolution, and the CLI end to end.

Swin: each block's un-windowed attention against the block recomputed as dense masked attention over its whole
map (no windows), the query maps' support against the windows and the shift drawn by hand, the rollout against
ViT's rollout within a stage and against a loop-built merge across stages, identity attentions, padding, batches,
transformers' Swin, and the CLI."""

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from conftest import TINY_VIT
from PIL import Image
from test_swin import TINY_SWIN, randomize, reference_folder

import hubformers
from hubformers import cli
from hubformers.attention_maps import (
    HEAD_FUSIONS,
    AttentionMaps,
    SwinLayout,
    attention_maps,
    attention_rollout,
    class_token_maps,
    discard_lowest,
    forward_with_block_attentions,
    layer_head_maps,
    rollout_maps,
    swin_attention_maps,
    swin_blocks,
    swin_layouts,
    swin_query_map,
    swin_rollout,
    unwindow_attention,
)
from hubformers.scripts import visualize_attention


def random_attentions(layers: int = 3, batch: int = 2, heads: int = 3, tokens: int = 5) -> tuple[torch.Tensor, ...]:
    return tuple(torch.randn(batch, heads, tokens, tokens).mul(2).softmax(-1) for _ in range(layers))


def loop_rollout(attentions: tuple[torch.Tensor, ...], head_fusion: str, discard_ratio: float) -> np.ndarray:
    """Abnar & Zuidema's rollout written out entry by entry, one image at a time, in float64."""
    attentions = [attention.double().numpy() for attention in attentions]
    batch, _, tokens, _ = attentions[0].shape
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[head_fusion]
    result = np.zeros((batch, tokens, tokens))
    for b in range(batch):
        rollout = np.eye(tokens)
        for attention in attentions:
            fused = np.array([[fuse(attention[b, :, i, j]) for j in range(tokens)] for i in range(tokens)])
            flat = fused.flatten()
            for index in np.argsort(flat)[: int(flat.size * discard_ratio)]:
                if index != 0:  # the class token's attention to itself stays
                    flat[index] = 0.0
            layer = 0.5 * flat.reshape(tokens, tokens) + 0.5 * np.eye(tokens)
            for i in range(tokens):
                layer[i] /= layer[i].sum()
            rollout = np.array(
                [
                    [sum(layer[i, k] * rollout[k, j] for k in range(tokens)) for j in range(tokens)]
                    for i in range(tokens)
                ]
            )
        result[b] = rollout
    return result


@pytest.mark.parametrize("discard_ratio", [0.0, 0.3])
@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_rollout_matches_loop_oracle(head_fusion, discard_ratio):
    attentions = random_attentions()
    got = attention_rollout(attentions, head_fusion, discard_ratio)
    assert got.shape == (2, 5, 5) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), loop_rollout(attentions, head_fusion, discard_ratio), atol=1e-6)


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_rollout_rows_sum_to_one(head_fusion):
    """Max/min fusion and discarding break the rows' sums; the re-normalisation must restore them."""
    rollout = attention_rollout(random_attentions(layers=4), head_fusion, discard_ratio=0.5)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5))


def test_identity_attention_gives_identity_rollout():
    identity = torch.eye(5).expand(2, 3, 5, 5)
    torch.testing.assert_close(attention_rollout((identity,) * 4), torch.eye(5).expand(2, 5, 5))


def test_one_layer_rollout_is_half_mean_attention_plus_half_identity():
    (attention,) = random_attentions(layers=1)
    torch.testing.assert_close(attention_rollout((attention,)), 0.5 * attention.mean(1) + 0.5 * torch.eye(5))


def test_rollout_multiplies_later_layers_on_the_left():
    first, second = random_attentions(layers=2, heads=1)
    residual = [0.5 * a[:, 0] + 0.5 * torch.eye(5) for a in (first, second)]
    torch.testing.assert_close(attention_rollout((first, second)), residual[1] @ residual[0])


def test_discard_spares_the_class_token_self_attention():
    fused = torch.arange(16.0).reshape(1, 4, 4)  # (0, 0) holds the lowest value
    got = discard_lowest(fused, 0.5)
    expected = fused.clone()
    expected[0, 1, :] = 0.0  # flat indices 4..7; 1..3 too, but not 0
    expected[0, 0, 1:] = 0.0
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    "attentions, kwargs",
    [
        (random_attentions(), {"head_fusion": "sum"}),
        (random_attentions(), {"discard_ratio": 1.0}),
        ((), {}),
        ((torch.rand(2, 5, 5),), {}),
        ((torch.rand(1, 2, 5, 5), torch.rand(1, 2, 6, 6)), {}),
    ],
)
def test_rollout_rejects_bad_input(attentions, kwargs):
    with pytest.raises(ValueError):
        attention_rollout(attentions, **kwargs)


@pytest.mark.parametrize("to_kind", [torch.as_tensor, np.asarray])
def test_class_token_maps_read_row_zero_over_the_last_patches_row_major(to_kind):
    """Tokens: class, one extra prefix token (DeiT's distillation token), then a 2x3 patch grid."""
    attention = torch.zeros(8, 8)
    attention[0] = torch.arange(8.0)
    attention[1:, 0] = 99.0  # the class token's column must not leak in
    got = class_token_maps(to_kind(attention.numpy()), (2, 3))
    np.testing.assert_array_equal(np.asarray(got), [[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]])
    with pytest.raises(ValueError, match="grid"):
        class_token_maps(attention, (3, 3))


def test_maps_under_sdpa_equal_eager():
    model = hubformers.ViTModel(hubformers.ViTConfig(**TINY_VIT)).train()
    pixel_values = torch.randn(2, 3, 32, 32)
    model.set_attn_implementation("eager")
    eager = attention_maps(model, pixel_values)
    model.set_attn_implementation("sdpa")
    sdpa = attention_maps(model, pixel_values, head_fusion="max", discard_ratio=0.1)
    sdpa_mean = attention_maps(model, pixel_values)
    assert model.training and model.config._attn_implementation == "sdpa"
    assert eager.grid == (4, 4)
    assert eager.per_layer.shape == (2, 2, 4, 17, 17)
    assert eager.cls_maps.shape == (2, 2, 4, 4, 4)
    assert eager.rollout.shape == (2, 17, 17) and eager.rollout_map.shape == (2, 4, 4)
    for field in ("per_layer", "cls_maps", "rollout", "rollout_map"):
        np.testing.assert_allclose(getattr(sdpa_mean, field), getattr(eager, field), atol=1e-6)
    assert not np.allclose(sdpa.rollout, eager.rollout)  # the fusion arguments reach the rollout


def test_array_helpers_agree_with_the_dataclass():
    attentions = random_attentions(tokens=7)  # class token + a 2x3 grid
    maps = AttentionMaps.from_attentions(attentions, (2, 3), "min", 0.2)
    np.testing.assert_array_equal(layer_head_maps(attentions, (2, 3)), maps.cls_maps)
    np.testing.assert_allclose(rollout_maps(attentions, (2, 3), "min", 0.2), maps.rollout_map)
    np.testing.assert_array_equal(maps.cls_maps[:, 1, 2, 1, 0], attentions[1][:, 2, 0, 4].numpy())


def test_non_square_input():
    model = hubformers.ViTModel(hubformers.ViTConfig(**TINY_VIT)).eval()
    maps = attention_maps(model, torch.randn(1, 3, 48, 32), interpolate_pos_encoding=True)
    assert maps.grid == (6, 4)
    assert maps.per_layer.shape == (1, 2, 4, 25, 25)
    assert maps.cls_maps.shape == (1, 2, 4, 6, 4) and maps.rollout_map.shape == (1, 6, 4)


def object_looking_vit() -> hubformers.ViTModel:
    """A 3x5-patch, one-head ViT whose class token attends to the bright patch of a dark image.

    A patch token is [b, -b, 0, 0] for its mean brightness b, which LayerNorm turns into +-[1.41, -1.41, 0, 0]
    by the sign of b; the class token is [0, 0, 1, -1]. The query reads feature 2 (the class token's), the key
    feature 0 (a patch's brightness), so the class token scores +16 on bright patches, -16 on dark ones and 0
    on itself. Values and MLPs are zero: every layer sees the same tokens and attends the same way.
    """
    config = hubformers.ViTConfig(
        hidden_size=4,
        num_hidden_layers=2,
        num_attention_heads=1,
        intermediate_size=4,
        image_size=(24, 40),
        patch_size=8,
    )
    model = hubformers.ViTModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        projection = model.embeddings.patch_embeddings.projection.weight  # (hidden, channels, 8, 8)
        projection[0] = 1.0 / projection[0].numel()
        projection[1] = -1.0 / projection[1].numel()
        model.embeddings.cls_token[0, 0] = torch.tensor([0.0, 0.0, 1.0, -1.0])
        for layer in model.layers:
            layer.layernorm_before.weight.fill_(1.0)
            layer.attention.q_proj.weight[0, 2] = 4.0
            layer.attention.k_proj.weight[0, 0] = 4.0
    return model


@pytest.mark.parametrize("row, column", [(2, 1), (0, 4), (1, 0)])
def test_maps_point_at_the_object(row, column):
    pixel_values = torch.full((1, 3, 24, 40), -1.0)
    pixel_values[..., 8 * row : 8 * row + 8, 8 * column : 8 * column + 8] = 1.0
    maps = attention_maps(object_looking_vit(), pixel_values)
    assert maps.cls_maps.shape == (1, 2, 1, 3, 5)
    assert (maps.cls_maps[0, :, 0, row, column] > 0.99).all()
    assert np.unravel_index(maps.rollout_map[0].argmax(), (3, 5)) == (row, column)
    # rollout of two such layers: 1/2 on the object from each layer's attention, 1/4 from the identity
    assert maps.rollout_map[0, row, column] == pytest.approx(0.5 + 0.25 / 16, abs=1e-4)


LABELS = {0: "cat", 1: "dog", 2: "bird"}


@pytest.fixture
def saved_classifier(tmp_path):
    config = hubformers.ViTConfig(**TINY_VIT, id2label=LABELS)
    return save_for_cli(tmp_path, hubformers.ViTForImageClassification(config))


def save_for_cli(folder, model):
    """The model and a 32x32 image processor in folder/model, a random 40x50 folder/image.png."""
    model.save_pretrained(folder / "model")
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder / "model")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    image.save(folder / "image.png")
    return folder


def visualize(folder, extra_args: list[str]):
    """`hubformers visualize-attention` on the folder's image.png and model/: checks the picture is a PNG and
    returns the arrays it saved."""
    out, arrays = folder / "attention.png", folder / "maps.npz"
    cli.main(
        ["visualize-attention", str(folder / "image.png"), "--model", str(folder / "model")]
        + ["--out", str(out), "--save-arrays", str(arrays)]
        + extra_args
    )
    with Image.open(out) as picture:
        assert picture.format == "PNG" and min(picture.size) > 0
    return np.load(arrays)


@pytest.mark.parametrize("extra_args", [[], ["--per-head", "--head-fusion", "max", "--discard-ratio", "0.2"]])
def test_cli_writes_picture_and_arrays(saved_classifier, extra_args):
    saved = visualize(saved_classifier, extra_args)
    assert saved["per_layer"].shape == (2, 4, 17, 17)
    assert saved["cls_maps"].shape == (2, 4, 4, 4)
    assert saved["rollout"].shape == (17, 17) and saved["rollout_map"].shape == (4, 4)
    assert saved["grid"].tolist() == [4, 4]


def test_cli_labels_classifiers_only(saved_classifier):
    image = Image.open(saved_classifier / "image.png")
    model_dir = saved_classifier / "model"
    processor = hubformers.ViTImageProcessor.from_pretrained(model_dir)
    args = argparse.Namespace(head_fusion="mean", discard_ratio=0.0)
    classifier = visualize_attention.load_model(str(model_dir))
    assert visualize_attention.compute_maps(classifier, processor, image, args)[1] in {"cat", "dog", "bird"}

    classifier.vit.save_pretrained(saved_classifier / "base")
    base = visualize_attention.load_model(str(saved_classifier / "base"))
    assert isinstance(base, hubformers.ViTModel)
    maps, label = visualize_attention.compute_maps(base, processor, image, args)
    assert label is None and maps.rollout_map.shape == (1, 4, 4)


# Swin


def swin_classifier(**overrides) -> hubformers.SwinForImageClassification:
    """TINY_SWIN (patch 2, window 4, 3 stages of 2 blocks, 2/2/4 heads) with random weights everywhere."""
    return randomize(hubformers.SwinForImageClassification(hubformers.SwinConfig(**{**TINY_SWIN, **overrides})))


def run_capturing_blocks(model, pixel_values) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    """Every block's input tokens (caught by pre-hooks) and window attention."""
    inputs = []
    hooks = [block.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for block in swin_blocks(model)]
    try:
        _, attentions = forward_with_block_attentions(model, pixel_values)
    finally:
        for hook in hooks:
            hook.remove()
    return inputs, attentions


@torch.no_grad()
def masked_attention_oracle(block, hidden, layout: SwinLayout, table_window: int) -> torch.Tensor:
    """A Swin block's attention probabilities as dense attention over its whole map, no windows: (batch, heads,
    H * W, H * W). Every pair of tokens of the map, padded with zeros at the bottom and right to whole windows
    after the LayerNorm, is scored from the block's query and key projections; a pair may attend only when both
    tokens fall in one window of the map rolled up and left by `shift`, with no wrap-around between them (their
    offset is the same before and after the roll); the bias is the table's row for that offset."""
    attention = block.attention
    batch, _, channels = hidden.shape
    (height, width), window, shift = layout.grid, layout.window, layout.shift
    padded_h, padded_w = -(-height // window) * window, -(-width // window) * window
    normed = block.layernorm_before(hidden).view(batch, height, width, channels)
    normed = F.pad(normed, (0, 0, 0, padded_w - width, 0, padded_h - height)).flatten(1, 2)
    query = attention.q_proj(normed).unflatten(-1, (attention.num_heads, -1)).transpose(1, 2)
    key = attention.k_proj(normed).unflatten(-1, (attention.num_heads, -1)).transpose(1, 2)
    scores = query @ key.transpose(-1, -2) / query.shape[-1] ** 0.5  # (batch, heads, P, P)

    rows, cols = (
        axis.flatten() for axis in torch.meshgrid(torch.arange(padded_h), torch.arange(padded_w), indexing="ij")
    )
    rolled_rows, rolled_cols = (rows - shift) % padded_h, (cols - shift) % padded_w
    d_rows, d_cols = rolled_rows[:, None] - rolled_rows[None, :], rolled_cols[:, None] - rolled_cols[None, :]
    same_window = (rolled_rows[:, None] // window == rolled_rows[None, :] // window) & (
        rolled_cols[:, None] // window == rolled_cols[None, :] // window
    )
    no_wrap = (d_rows == rows[:, None] - rows[None, :]) & (d_cols == cols[:, None] - cols[None, :])
    side = 2 * table_window - 1
    index = (d_rows + table_window - 1).clamp(0, side - 1) * side + (d_cols + table_window - 1).clamp(0, side - 1)
    bias = attention.relative_position_bias.relative_position_bias_table[index].permute(2, 0, 1)  # (heads, P, P)
    probabilities = (scores + bias).masked_fill(~(same_window & no_wrap), float("-inf")).softmax(-1)
    keep = (rows < height) & (cols < width)
    return probabilities[:, :, keep][:, :, :, keep]


def test_layouts_follow_the_model_blocks():
    """40x28 pixels: 20x14 patches (padded to 20x16 windows), 10x7 (12x8), then 5x4, no larger than a window."""
    model = swin_classifier()
    pixel_values = torch.randn(2, 3, 40, 28)
    outputs, attentions = forward_with_block_attentions(model, pixel_values)
    layouts = swin_layouts(model.config, (40, 28))
    assert [(layout.stage, layout.grid, layout.window, layout.shift) for layout in layouts] == [
        (0, (20, 14), 4, 0),
        (0, (20, 14), 4, 2),
        (1, (10, 7), 4, 0),
        (1, (10, 7), 4, 2),
        (2, (5, 4), 4, 0),
        (2, (5, 4), 4, 0),
    ]
    assert [layout.num_windows for layout in layouts] == [20, 20, 6, 6, 2, 2]
    assert [tuple(a.shape) for a in attentions] == [(40, 2, 16, 16)] * 2 + [(12, 2, 16, 16)] * 2 + [(4, 4, 16, 16)] * 2
    # the hooks catch what the model returns itself: each stage's last block
    for returned, caught in zip(outputs.attentions, attentions[1::2]):
        torch.testing.assert_close(returned, caught, rtol=0, atol=0)


@pytest.mark.parametrize("size", [(32, 32), (40, 28), (30, 62)])
def test_unwindowed_attention_matches_dense_masked_attention_oracle(size):
    """(32, 32): no padding; (40, 28): padding to windows; (30, 62): odd maps, padded patches, merges and windows."""
    model = swin_classifier()
    inputs, attentions = run_capturing_blocks(model, torch.randn(2, 3, *size))
    layouts = swin_layouts(model.config, size)
    assert len(inputs) == len(attentions) == len(layouts) == 6
    for block, hidden, attention, layout in zip(swin_blocks(model), inputs, attentions, layouts):
        expected = masked_attention_oracle(block, hidden, layout, model.config.window_size)
        got = unwindow_attention(attention, layout)
        tokens = layout.grid[0] * layout.grid[1]
        assert got.shape == expected.shape == (2, attention.shape[1], tokens, tokens)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
        if layout.padded == layout.grid:
            torch.testing.assert_close(got.sum(-1), torch.ones(2, attention.shape[1], tokens))
        for row, col in [(0, 0), (layout.grid[0] - 1, layout.grid[1] - 1), (layout.grid[0] // 2, 1)]:
            query_map = swin_query_map(attention, layout, (row, col))
            torch.testing.assert_close(query_map.flatten(-2), got[..., row * layout.grid[1] + col, :], rtol=0, atol=0)


def box(grid: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(grid, dtype=bool)
    mask[rows, cols] = True
    return mask


def test_query_maps_show_the_windows_and_the_shift():
    """Query patch (3, 3) of a 16x16 map, window 4, shift 2: unshifted, it sees its window [0, 4)^2; shifted, the
    window [2, 6)^2 across the border of the unshifted ones. On the 8x8 map of stage 2 it is token (1, 1): its
    shifted window wraps around to rows and columns {6, 7, 0, 1}, but the mask keeps it to {0, 1}^2."""
    maps = swin_attention_maps(swin_classifier(), torch.randn(1, 3, 32, 32), query=(7 / 32, 7 / 32))
    assert maps.query == (3, 3) and maps.grid == (16, 16)
    expected = [
        box((16, 16), slice(0, 4), slice(0, 4)),
        box((16, 16), slice(2, 6), slice(2, 6)),
        box((8, 8), slice(0, 4), slice(0, 4)),
        box((8, 8), slice(0, 2), slice(0, 2)),
        box((4, 4), slice(None), slice(None)),
        box((4, 4), slice(None), slice(None)),
    ]
    for block, (query_map, support) in enumerate(zip(maps.query_maps, expected)):
        assert query_map.shape == (1, 4 if block >= 4 else 2, *support.shape)
        assert ((query_map[0] > 1e-20) == support).all(), block
        np.testing.assert_allclose(query_map.sum((-2, -1)), 1.0, atol=1e-6)
    assert (maps.query_maps[1][0, :, 4, 4] > 0).all()  # across the unshifted window border


@pytest.mark.parametrize("head_fusion", HEAD_FUSIONS)
def test_one_stage_rollout_is_vit_rollout_of_the_unwindowed_blocks(head_fusion):
    """Within a stage the rollout is ViT's, on the dense matrices (a 14x18 map, padded to 16x20 windows)."""
    model = swin_classifier(depths=[3], num_heads=[2])
    pixel_values = torch.randn(2, 3, 28, 36)
    _, attentions = forward_with_block_attentions(model, pixel_values)
    layouts = swin_layouts(model.config, (28, 36))
    got = swin_rollout(attentions, layouts, head_fusion)
    expected = attention_rollout([unwindow_attention(a, layout) for a, layout in zip(attentions, layouts)], head_fusion)
    assert got.shape == (2, 14 * 18, 14 * 18)
    torch.testing.assert_close(got, expected)


def loop_merge(grid: tuple[int, int]) -> np.ndarray:
    """Patch merging as flow, child by child: a merged token's row split equally among its 2x2 children that
    lie on the map (the model pads odd maps at the bottom and right)."""
    height, width = grid
    merged_h, merged_w = (height + 1) // 2, (width + 1) // 2
    flow = np.zeros((merged_h * merged_w, height * width))
    for row in range(merged_h):
        for col in range(merged_w):
            children = [
                (r, c) for r in (2 * row, 2 * row + 1) for c in (2 * col, 2 * col + 1) if r < height and c < width
            ]
            for r, c in children:
                flow[row * merged_w + col, r * width + c] = 1.0 / len(children)
    return flow


def loop_swin_rollout(dense_layers: list[np.ndarray], layouts) -> np.ndarray:
    """One image's rollout built forwards, first block first: merge, then 0.5 * A + 0.5 * I row-normalised."""
    rollout = np.eye(dense_layers[0].shape[-1])
    for index, (attention, layout) in enumerate(zip(dense_layers, layouts)):
        if index and layout.stage != layouts[index - 1].stage:
            rollout = loop_merge(layouts[index - 1].grid) @ rollout
        layer = 0.5 * attention + 0.5 * np.eye(attention.shape[-1])
        rollout = (layer / layer.sum(axis=1, keepdims=True)) @ rollout
    return rollout


def test_rollout_through_patch_merging_matches_loop_oracle():
    """30x62 pixels: maps 15x31 -> 8x16 -> 4x8, odd sides merged with padding."""
    model = swin_classifier()
    pixel_values = torch.randn(2, 3, 30, 62)
    _, attentions = forward_with_block_attentions(model, pixel_values)
    layouts = swin_layouts(model.config, (30, 62))
    rollout = swin_rollout(attentions, layouts)
    maps = swin_attention_maps(model, pixel_values)
    assert rollout.shape == (2, 4 * 8, 15 * 31) and maps.rollout_map.shape == (2, 15, 31)
    for image in range(2):
        dense = [
            unwindow_attention(a, layout)[image].mean(0).double().numpy() for a, layout in zip(attentions, layouts)
        ]
        expected = loop_swin_rollout(dense, layouts)
        np.testing.assert_allclose(rollout[image].numpy(), expected, atol=1e-6)
        np.testing.assert_allclose(maps.rollout_map[image], expected.mean(0).reshape(15, 31), atol=1e-6)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 32))


def children(grid: tuple[int, int], parent: tuple[int, int]) -> int:
    """How many tokens of a (H, W) map patch merging puts into `parent`."""
    (height, width), (row, col) = grid, parent
    return (min(2 * row + 2, height) - 2 * row) * (min(2 * col + 2, width) - 2 * col)


@pytest.mark.parametrize("size", [(32, 32), (30, 26)])
def test_identity_attention_gives_merge_only_saliency(size):
    """With every block attending to itself only, what reaches the final tokens is the patch merging alone: on
    even maps (16x16 -> 8x8 -> 4x4) the saliency is uniform; on odd ones (15x13 -> 8x7 -> 4x4) a token whose
    parents have fewer children gets their larger share."""
    config = hubformers.SwinConfig(**TINY_SWIN)
    layouts = swin_layouts(config, size)
    heads = [config.num_heads[layout.stage] for layout in layouts]
    identities = [
        torch.eye(layout.window**2).expand(3 * layout.num_windows, head, -1, -1).clone()
        for layout, head in zip(layouts, heads)
    ]
    rollout = swin_rollout(identities, layouts)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(3, 16))
    saliency = rollout.mean(1).unflatten(-1, layouts[0].grid)
    (grid_1, grid_2, grid_3) = (layouts[i].grid for i in (0, 2, 4))
    expected = torch.tensor(
        [
            [1 / 16 / children(grid_2, (r // 4, c // 4)) / children(grid_1, (r // 2, c // 2)) for c in range(grid_1[1])]
            for r in range(grid_1[0])
        ]
    )
    assert grid_3 == (4, 4)
    torch.testing.assert_close(saliency, expected.expand(3, -1, -1))
    if size == (32, 32):
        torch.testing.assert_close(saliency, torch.full((3, 16, 16), 1 / 256))


def test_batch_non_square_padding_and_sdpa():
    """Each image of a batch gets the maps it gets alone (windows are batch-major), under sdpa as under eager."""
    model = swin_classifier()
    pixel_values = torch.randn(2, 3, 30, 62)
    maps = swin_attention_maps(model, pixel_values, query=(1.0, 0.0), head_fusion="max", discard_ratio=0.3)
    assert maps.grid == (15, 31) and maps.query == (14, 0)
    assert [q.shape for q in maps.query_maps] == [(2, 2, 15, 31)] * 2 + [(2, 2, 8, 16)] * 2 + [(2, 4, 4, 8)] * 2
    np.testing.assert_allclose(maps.rollout_map.sum((1, 2)), 1.0, atol=1e-5)
    model.set_attn_implementation("sdpa")
    alone = swin_attention_maps(model, pixel_values[1:], query=(1.0, 0.0), head_fusion="max", discard_ratio=0.3)
    np.testing.assert_allclose(alone.rollout_map[0], maps.rollout_map[1], atol=1e-6)
    np.testing.assert_allclose(alone.rollout[0], maps.rollout[1], atol=1e-6)
    for together, single in zip(maps.query_maps, alone.query_maps):
        np.testing.assert_allclose(single[0], together[1], atol=1e-6)
    mean = swin_attention_maps(model, pixel_values)
    assert not np.allclose(mean.rollout_map, maps.rollout_map)  # the fusion arguments reach the rollout


def test_maps_of_transformers_swin_match_ours(tmp_path):
    folder = reference_folder(tmp_path, transformers.SwinForImageClassification)
    reference = transformers.SwinForImageClassification.from_pretrained(folder, attn_implementation="eager")
    ours = hubformers.SwinForImageClassification.from_pretrained(folder)
    pixel_values = torch.randn(1, 3, 40, 28)
    expected = swin_attention_maps(reference, pixel_values, query=(0.3, 0.8))
    got = swin_attention_maps(ours, pixel_values, query=(0.3, 0.8))
    np.testing.assert_allclose(got.rollout_map, expected.rollout_map, atol=1e-6)
    for e, g in zip(expected.query_maps, got.query_maps, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-6)


def test_swin_maps_reject_bad_input():
    model = swin_classifier()
    config = model.config
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        swin_attention_maps(model, torch.randn(1, 3, 32, 32), query=(0.5, 1.5))
    with pytest.raises(ValueError, match="Swin"):
        swin_attention_maps(hubformers.ViTModel(hubformers.ViTConfig(**TINY_VIT)), torch.randn(1, 3, 32, 32))
    _, attentions = forward_with_block_attentions(model, torch.randn(1, 3, 32, 32))
    layouts = swin_layouts(config, (32, 32))
    with pytest.raises(ValueError, match="6 layouts, got 5"):
        swin_rollout(attentions[:5], layouts)
    with pytest.raises(ValueError, match=r"25 windows .* got \(16, 2, 16, 16\)"):  # 32x32 has 16, 40x40 25
        swin_rollout(attentions, swin_layouts(config, (40, 40)))
    with pytest.raises(ValueError, match="stage by stage"):
        swin_rollout(attentions[:2] + attentions[4:] + attentions[2:4], layouts[:2] + layouts[4:] + layouts[2:4])
    with pytest.raises(ValueError, match="head_fusion"):
        swin_rollout(attentions, layouts, head_fusion="sum")
    with pytest.raises(ValueError, match="discard_ratio"):
        swin_rollout(attentions, layouts, discard_ratio=1.0)
    with pytest.raises(ValueError, match="16x16 map"):
        swin_query_map(attentions[0], layouts[0], (16, 0))
    with pytest.raises(ValueError, match="one batch"):
        swin_rollout((attentions[0].repeat(2, 1, 1, 1),) + attentions[1:], layouts)


@pytest.fixture
def saved_swin(tmp_path):
    return save_for_cli(tmp_path, swin_classifier(id2label=LABELS))


@pytest.mark.parametrize(
    "extra_args, query",
    [
        ([], (8, 8)),
        (["--per-head", "--query", "0.2", "0.9", "--head-fusion", "min", "--discard-ratio", "0.2"], (3, 14)),
    ],
)
def test_cli_draws_swin_maps(saved_swin, extra_args, query):
    saved = visualize(saved_swin, extra_args)
    assert saved["rollout"].shape == (16, 256) and saved["rollout_map"].shape == (16, 16)
    assert saved["grid"].tolist() == [16, 16] and saved["query"].tolist() == list(query)
    assert (
        saved["layouts"].tolist()
        == [[0, 16, 16, 4, 0], [0, 16, 16, 4, 2], [1, 8, 8, 4, 0], [1, 8, 8, 4, 2]] + [[2, 4, 4, 4, 0]] * 2
    )
    assert [saved[f"query_maps_{block}"].shape for block in range(6)] == [(2, 16, 16)] * 2 + [(2, 8, 8)] * 2 + [
        (4, 4, 4)
    ] * 2


def test_cli_labels_swin_and_rejects_a_query_off_the_image(saved_swin):
    model_dir = saved_swin / "model"
    image = Image.open(saved_swin / "image.png")
    processor = hubformers.ViTImageProcessor.from_pretrained(model_dir)
    args = argparse.Namespace(head_fusion="mean", discard_ratio=0.0, query=(0.5, 0.5))
    maps, label = visualize_attention.compute_maps(
        visualize_attention.load_model(str(model_dir)), processor, image, args
    )
    assert label in set(LABELS.values()) and maps.rollout_map.shape == (1, 16, 16)
    for query in (["1.5", "0.5"], ["0.5", "-0.1"]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            visualize(saved_swin, ["--query", *query])
    assert not (saved_swin / "attention.png").exists()
