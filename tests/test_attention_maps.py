"""Attention maps: rollout against a loop-by-loop oracle and its defining properties, class-token maps in the
right place (a hand-built ViT that looks at one patch), sdpa = eager, any resolution, and the CLI end to end."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

import hubformers
from conftest import TINY_VIT
from hubformers import cli
from hubformers.attention_maps import (
    AttentionMaps,
    attention_maps,
    attention_rollout,
    class_token_maps,
    discard_lowest,
    layer_head_maps,
    rollout_maps,
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


@pytest.fixture
def saved_classifier(tmp_path):
    config = hubformers.ViTConfig(**TINY_VIT, id2label={0: "cat", 1: "dog", 2: "bird"})
    hubformers.ViTForImageClassification(config).save_pretrained(tmp_path / "model")
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "model")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    image.save(tmp_path / "image.png")
    return tmp_path


@pytest.mark.parametrize("extra_args", [[], ["--per-head", "--head-fusion", "max", "--discard-ratio", "0.2"]])
def test_cli_writes_picture_and_arrays(saved_classifier, extra_args):
    out, arrays = saved_classifier / "attention.png", saved_classifier / "maps.npz"
    cli.main(
        ["visualize-attention", str(saved_classifier / "image.png"), "--model", str(saved_classifier / "model")]
        + ["--out", str(out), "--save-arrays", str(arrays)]
        + extra_args
    )
    with Image.open(out) as picture:
        assert picture.format == "PNG" and min(picture.size) > 0
    saved = np.load(arrays)
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
