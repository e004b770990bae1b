"""Swin: parity with transformers' Swin on the same weights (also at sizes that need padding), windows larger
than the map, window-size change on load, the backbone under UperNet, cached masks, export, and clear errors
on bad input."""

import pytest
import torch
import torch.nn.functional as F
import transformers
from conftest import max_abs_diff
from transformers import AutoBackbone, AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

import hubformers
from hubformers import cpu_kernels, fused_linear, swin_fast_paths

TOL = 1e-5
needs_onednn = pytest.mark.skipif(not fused_linear.ONEDNN, reason="oneDNN's fused linear is for x86 CPUs")
needs_kernel = pytest.mark.skipif(
    cpu_kernels.window_attention_kernel(16, 16) is None, reason="the C kernels need Linux x86-64 and a C compiler"
)
# 3 stages on 16x16 patches: maps 16 -> 8 -> 4; window 4 (shifted by 2) so every stage shifts but the last;
# heads of 8, 16 and 16 floats: the C window attention takes the last two stages (multiples of 16)
TINY_SWIN = dict(
    image_size=32,
    patch_size=2,
    embed_dim=16,
    depths=[2, 2, 2],
    num_heads=[2, 2, 4],
    window_size=4,
    encoder_stride=8,
    num_labels=3,
)
# heights/widths: no padding; padding at every stage; odd maps before merging; non-square
SIZES = [(32, 32), (40, 28), (36, 52), (30, 62)]
MODEL_CLASSES = [
    hubformers.SwinModel,
    hubformers.SwinForImageClassification,
    hubformers.SwinForMaskedImageModeling,
    hubformers.SwinBackbone,
]


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Random values in every parameter (transformers initialises bias tables, LayerNorms and mask tokens
    to constants, which would hide mistakes)."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model.eval()


def count_window_attention(monkeypatch, kernel: bool) -> list[str]:
    """Turns the C window attention off (`kernel=False`), and records which window attention every sdpa call
    runs: "kernel" (with gradients or without), "bmm" (`WindowAttention`)."""
    if not kernel:
        monkeypatch.setattr(cpu_kernels, "window_attention_kernel", lambda tokens, head_dim: None)
    calls = []
    for name, label in [("FusedWindowAttention", "kernel"), ("WindowAttention", "bmm")]:
        function = getattr(swin_fast_paths, name)
        monkeypatch.setattr(
            function, "apply", lambda *args, f=function.apply, label=label: calls.append(label) or f(*args)
        )
    forward = swin_fast_paths.fused_window_attention
    monkeypatch.setattr(
        swin_fast_paths, "fused_window_attention", lambda *args: calls.append("kernel") or forward(*args)
    )
    return calls


def reference_folder(tmp_path, reference_class, **overrides):
    config = transformers.SwinConfig(**{**TINY_SWIN, **overrides})
    randomize(reference_class(config)).save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("onednn", [pytest.param(True, marks=needs_onednn), False])
@pytest.mark.parametrize(
    "attn_implementation, kernel", [("eager", False), ("sdpa", False), pytest.param("sdpa", True, marks=needs_kernel)]
)
def test_classifier_matches_transformers_at_any_size(tmp_path, monkeypatch, attn_implementation, kernel, onednn):
    """Also with the linears fused by oneDNN (every one of them: qkv, output, both MLP layers, merging), and
    with sdpa's work done by the C window attention."""
    monkeypatch.setattr(fused_linear, "ONEDNN", onednn)
    attention_calls = count_window_attention(monkeypatch, kernel)
    fused_calls = []
    runs_fused = fused_linear.runs_fused

    def recorded(*tensors):
        fused_calls.append(runs_fused(*tensors))
        return fused_calls[-1]

    monkeypatch.setattr(fused_linear, "runs_fused", recorded)
    folder = reference_folder(tmp_path, transformers.SwinForImageClassification)
    ours = hubformers.SwinForImageClassification.from_pretrained(folder).eval()
    ours.set_attn_implementation(attn_implementation)
    assert ours.config._attn_implementation == attn_implementation  # transformers accepts the switch
    for size in SIZES:
        # transformers' Swin shrinks its window in place on small maps: a fresh copy for every size
        reference = transformers.SwinForImageClassification.from_pretrained(folder).eval()
        pixel_values = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = reference(pixel_values, output_hidden_states=True)
            got = ours(pixel_values, output_hidden_states=True)
        assert max_abs_diff(expected.logits, got.logits) <= TOL, size
        assert len(got.hidden_states) == len(got.reshaped_hidden_states) == 4
        for e, g in zip(
            expected.hidden_states + expected.reshaped_hidden_states, got.hidden_states + got.reshaped_hidden_states
        ):
            assert e.shape == g.shape and max_abs_diff(e, g) <= TOL, size
    assert fused_calls and all(fused is onednn for fused in fused_calls)
    # the blocks of the last two stages, at every size
    assert attention_calls == (["kernel"] * len(SIZES) * 4 if kernel else [])


def test_attention_maps_match_transformers_eager(tmp_path):
    """sdpa never forms the maps; asking for them runs the eager path for that call, same probabilities."""
    folder = reference_folder(tmp_path, transformers.SwinModel)
    reference = transformers.SwinModel.from_pretrained(folder, attn_implementation="eager").eval()
    ours = hubformers.SwinModel.from_pretrained(folder).eval()
    ours.set_attn_implementation("sdpa")
    pixel_values = torch.randn(2, 3, 40, 28)
    with torch.no_grad():
        expected = reference(pixel_values, output_attentions=True)
        got = ours(pixel_values, output_attentions=True)
        plain = ours(pixel_values)
    assert [tuple(a.shape) for a in got.attentions] == [(2 * 5 * 4, 2, 16, 16), (2 * 3 * 2, 2, 16, 16), (4, 4, 16, 16)]
    for e, g in zip(expected.attentions, got.attentions):
        assert max_abs_diff(e, g) <= TOL
    torch.testing.assert_close(got.attentions[0].sum(-1), torch.ones(40, 2, 16))
    assert plain.attentions is None
    assert max_abs_diff(plain.last_hidden_state, got.last_hidden_state) <= TOL
    assert max_abs_diff(expected.pooler_output, got.pooler_output) <= TOL


@pytest.mark.parametrize(
    "our_class", [hubformers.SwinModel, hubformers.SwinForImageClassification, hubformers.SwinBackbone]
)
def test_outputs_requested_through_the_config_match_transformers(tmp_path, our_class):
    """`config.output_hidden_states` / `output_attentions` give what the call's arguments give, the maps in
    `reshaped_hidden_states` (the backbone's `hidden_states`) included, as transformers' Swin configured the
    same way does."""
    reference_class = getattr(transformers, our_class.__name__)
    overrides = (
        dict(out_features=["stem", "stage1", "stage2", "stage3"]) if our_class is hubformers.SwinBackbone else {}
    )
    folder = reference_folder(tmp_path, reference_class, **overrides)
    reference = reference_class.from_pretrained(folder, attn_implementation="eager").eval()
    ours = our_class.from_pretrained(folder, attn_implementation="eager").eval()  # configs refuse it with sdpa
    for model in (reference, ours):
        model.config.output_hidden_states = model.config.output_attentions = True
    pixel_values = torch.randn(2, 3, 40, 28)
    with torch.no_grad():
        expected, got = reference(pixel_values), ours(pixel_values)
    names = ["hidden_states", "attentions"] + (
        [] if our_class is hubformers.SwinBackbone else ["reshaped_hidden_states"]
    )
    for name in names:
        assert got[name] is not None and len(got[name]) == len(expected[name]) > 0, name
        for e, g in zip(expected[name], got[name]):
            assert e.shape == g.shape and max_abs_diff(e, g) <= TOL, name


def test_outputs_depend_only_on_the_input(tmp_path):
    """A call at a small size (whose maps are smaller than a window) leaves no trace in later calls: after it,
    a large image gives exactly what a fresh model gives, and what a freshly loaded transformers Swin gives
    (whose layers keep the window they shrank to, so that one call changes every later output)."""
    folder = reference_folder(tmp_path, transformers.SwinForImageClassification)
    ours = hubformers.SwinForImageClassification.from_pretrained(folder).eval()
    fresh = hubformers.SwinForImageClassification.from_pretrained(folder).eval()
    small, large = torch.randn(2, 3, 16, 20), torch.randn(2, 3, 64, 56)
    with torch.no_grad():
        ours(small)
        got = ours(large).logits
        assert torch.equal(got, fresh(large).logits)
        reference = transformers.SwinForImageClassification.from_pretrained(folder).eval()
        assert max_abs_diff(reference(large).logits, got) <= TOL


def test_masked_image_modeling_matches_transformers(tmp_path):
    folder = reference_folder(tmp_path, transformers.SwinForMaskedImageModeling)
    reference = transformers.SwinForMaskedImageModeling.from_pretrained(folder).eval()
    ours = hubformers.SwinForMaskedImageModeling.from_pretrained(folder).eval()
    pixel_values, bool_masked_pos = torch.randn(2, 3, 32, 32), torch.rand(2, 256) < 0.5
    with torch.no_grad():
        expected, got = reference(pixel_values, bool_masked_pos), ours(pixel_values, bool_masked_pos)
    assert got.reconstruction.shape == pixel_values.shape
    assert max_abs_diff(expected.reconstruction, got.reconstruction) <= TOL
    assert abs(expected.loss.item() - got.loss.item()) <= TOL


def test_masked_image_modeling_on_non_square_images():
    model = hubformers.SwinForMaskedImageModeling(hubformers.SwinConfig(**TINY_SWIN)).eval()
    pixel_values = torch.randn(2, 3, 16, 40)
    out = model(pixel_values, bool_masked_pos=torch.rand(2, 8 * 20) < 0.5)
    assert out.reconstruction.shape == pixel_values.shape and out.loss.item() > 0


def test_backbone_matches_transformers(tmp_path):
    overrides = dict(out_features=["stem", "stage1", "stage2", "stage3"])
    folder = reference_folder(tmp_path, transformers.SwinBackbone, **overrides)
    reference = transformers.SwinBackbone.from_pretrained(folder).eval()
    ours = hubformers.SwinBackbone.from_pretrained(folder).eval()
    assert ours.channels == [16, 16, 32, 64]
    pixel_values = torch.randn(2, 3, 44, 36)
    with torch.no_grad():
        expected, got = reference(pixel_values), ours(pixel_values)
    assert [tuple(f.shape) for f in got.feature_maps] == [
        (2, 16, 22, 18),
        (2, 16, 22, 18),
        (2, 32, 11, 9),
        (2, 64, 6, 5),
    ]
    for e, g in zip(expected.feature_maps, got.feature_maps):
        assert max_abs_diff(e, g) <= TOL
    assert got.hidden_states is None


def test_upernet_with_our_backbone_trains():
    """transformers' UperNet builds our backbone from its config (AutoBackbone) and learns a segmentation."""
    backbone_config = hubformers.SwinConfig(**TINY_SWIN, out_features=["stage1", "stage2", "stage3"])
    config = transformers.UperNetConfig(
        backbone_config=backbone_config, hidden_size=16, auxiliary_in_channels=64, num_labels=3
    )
    model = transformers.UperNetForSemanticSegmentation(config)
    assert isinstance(model.backbone, hubformers.SwinBackbone)
    pixel_values = torch.randn(2, 3, 32, 32)
    labels = (pixel_values[:, 0] > 0).long() + (pixel_values[:, 1] > 0.5).long()  # a per-pixel target
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        out = model(pixel_values, labels=labels)
        out.loss.backward()
        # every backbone parameter but the classifier's final LayerNorm (kept for checkpoints) learns
        assert [n for n, p in model.backbone.named_parameters() if p.grad is None] == [
            "swin.layernorm.weight",
            "swin.layernorm.bias",
        ]
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.loss.item())
    assert out.logits.shape == (2, 3, 32, 32)
    assert losses[-1] < 0.9 * losses[0], losses


def test_window_larger_than_map_uses_the_central_bias(tmp_path):
    """On a 3x3 map a window of 4 shrinks to 3 (unshifted), as in transformers, whose own Swin then fails on
    its 4x4 bias; ours takes the table's central offsets, which is a window-3 Swin with the cropped table."""
    config = dict(TINY_SWIN, image_size=6, depths=[2], num_heads=[2], encoder_stride=2)
    ours = randomize(hubformers.SwinModel(hubformers.SwinConfig(**config)))
    reference = transformers.SwinModel(transformers.SwinConfig(**{**config, "window_size": 3})).eval()
    state = ours.state_dict()
    for key, table in state.items():
        if key.endswith("relative_position_bias_table"):  # (7 * 7, heads) -> central (5 * 5, heads)
            state[key] = table.reshape(7, 7, -1)[1:6, 1:6].reshape(25, -1)
    reference.load_state_dict(state, strict=False)
    pixel_values = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert max_abs_diff(reference(pixel_values).last_hidden_state, ours(pixel_values).last_hidden_state) <= TOL


def test_checkpoint_loads_at_another_window_size(tmp_path):
    folder = reference_folder(tmp_path, transformers.SwinForImageClassification)
    ours = hubformers.SwinForImageClassification.from_pretrained(folder, window_size=6).eval()
    saved = transformers.SwinForImageClassification.from_pretrained(folder)
    old = saved.swin.encoder.layers[1].blocks[1].attention.relative_position_bias.relative_position_bias_table
    new = ours.swin.encoder.layers[1].blocks[1].attention.relative_position_bias.relative_position_bias_table
    assert ours.config.window_size == 6 and new.shape == (11 * 11, 2)
    # the original Swin's recipe: each head's (2M-1)^2 grid resized bicubically to (2M'-1)^2
    expected = F.interpolate(old.detach().permute(1, 0).reshape(1, 2, 7, 7), size=(11, 11), mode="bicubic")
    assert max_abs_diff(new, expected.reshape(2, 121).permute(1, 0)) <= 1e-6
    assert torch.isfinite(ours(torch.randn(1, 3, 48, 48)).logits).all()
    # the resized model saves and reloads as itself
    ours.save_pretrained(tmp_path / "resized")
    again = hubformers.SwinForImageClassification.from_pretrained(tmp_path / "resized").eval()
    pixel_values = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(again(pixel_values).logits, ours(pixel_values).logits)


def test_bias_and_mask_are_cached_until_the_table_changes():
    model = hubformers.SwinForImageClassification(hubformers.SwinConfig(**TINY_SWIN)).eval()
    attention = model.swin.encoder.layers[0].blocks[1].attention
    calls = []
    attention.relative_position_bias.register_forward_hook(lambda *args: calls.append(1))
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = model(pixel_values).logits
        model(pixel_values)
        assert len(calls) == 1  # built once for this resolution
        # one mask per window position (16x16 map, window 4), not per image: the cache does not grow with batch
        assert [mask.shape[0] for mask in attention._mask_cache.values()] == [16]
        model(torch.randn(1, 3, 40, 40))
        assert len(calls) == 2  # and once for another
    # a training step changes the table in place: the next call rebuilds and gives the fresh model's result
    model.train()
    model(pixel_values, labels=torch.tensor([0, 1])).loss.backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    model.eval()
    fresh = hubformers.SwinForImageClassification(model.config).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        updated = model(pixel_values).logits
        assert max_abs_diff(updated, fresh(pixel_values).logits) <= 1e-6
    assert max_abs_diff(updated, first) > 1e-3


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=needs_kernel), False])
@pytest.mark.parametrize("size", [(32, 32), (40, 28)])
def test_training_gradients_match_transformers(tmp_path, monkeypatch, size, kernel):
    """Training on the CPU runs window attention through the C kernel, or else `WindowAttention` (sdpa would
    fall back to its math path): its gradients, the bias tables' included, are transformers' on the same
    weights."""
    folder = reference_folder(tmp_path, transformers.SwinForImageClassification, drop_path_rate=0.0)
    reference = transformers.SwinForImageClassification.from_pretrained(folder).train()
    ours = hubformers.SwinForImageClassification.from_pretrained(folder).train()
    calls = count_window_attention(monkeypatch, kernel)
    pixel_values, labels = torch.randn(3, 3, *size), torch.tensor([0, 1, 2])
    expected, got = reference(pixel_values, labels=labels).loss, ours(pixel_values, labels=labels).loss
    expected.backward(), got.backward()
    assert calls == ["bmm"] * 2 + ["kernel" if kernel else "bmm"] * 4  # every block; the kernel's are 16 wide
    assert abs(expected.item() - got.item()) <= TOL
    reference_grads = dict(reference.named_parameters())
    for name, parameter in ours.named_parameters():
        assert max_abs_diff(reference_grads[name].grad, parameter.grad) <= TOL, name


def test_wrapped_projections_are_called():
    """A projection replaced by another module (as LoRA adapters do) runs its own forward, not the fused weights
    or the in-place MLP: value projections and second MLP layers wrapped to add 1 give the model whose biases
    are 1 higher."""

    class PlusOne(torch.nn.Module):
        def __init__(self, linear):
            super().__init__()
            self.linear = linear

        def forward(self, x):
            return self.linear(x) + 1.0

    model = randomize(hubformers.SwinForImageClassification(hubformers.SwinConfig(**TINY_SWIN)))
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(pixel_values).logits
        for stage in model.swin.encoder.layers:
            for block in stage.blocks:
                for linear in (block.attention.v_proj, block.mlp.fc2):
                    linear.bias += 1.0
        expected = model(pixel_values).logits
        for stage in model.swin.encoder.layers:
            for block in stage.blocks:
                for linear in (block.attention.v_proj, block.mlp.fc2):
                    linear.bias -= 1.0
                block.attention.v_proj = PlusOne(block.attention.v_proj)
                block.mlp.fc2 = PlusOne(block.mlp.fc2)
        got = model(pixel_values).logits
    assert max_abs_diff(expected, got) <= TOL
    assert max_abs_diff(before, got) > 1e-3


def test_frozen_blocks_around_a_trainable_mlp():
    """In eval mode with gradients on, a trainable MLP behind frozen layers (its input needs no gradient) gets
    the gradient it gets in a fully trainable model: no in-place inference path where a gradient is needed."""
    model = randomize(hubformers.SwinForImageClassification(hubformers.SwinConfig(**TINY_SWIN)))
    pixel_values = torch.randn(2, 3, 32, 32)
    model(pixel_values).logits.sum().backward()
    fc2 = model.swin.encoder.layers[0].blocks[0].mlp.fc2
    expected = fc2.weight.grad.clone()
    model.zero_grad()
    model.requires_grad_(False)
    fc2.requires_grad_(True)
    model(pixel_values).logits.sum().backward()
    assert max_abs_diff(fc2.weight.grad, expected) <= 1e-6


def test_stochastic_depth_only_in_training():
    model = hubformers.SwinModel(hubformers.SwinConfig(**TINY_SWIN, drop_path_rate=0.5))
    pixel_values = torch.randn(4, 3, 32, 32)
    model.train()
    a, b = model(pixel_values).last_hidden_state, model(pixel_values).last_hidden_state
    assert max_abs_diff(a, b) > 1e-3
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(pixel_values).last_hidden_state, model(pixel_values).last_hidden_state)


def test_auto_classes_resolve_to_ours(tmp_path):
    config = hubformers.SwinConfig(**TINY_SWIN)
    hubformers.SwinForImageClassification(config).save_pretrained(tmp_path)
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), hubformers.SwinConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), hubformers.SwinModel)
    assert isinstance(AutoModelForImageClassification.from_pretrained(tmp_path), hubformers.SwinForImageClassification)
    masked = transformers.AutoModelForMaskedImageModeling.from_config(config)
    assert isinstance(masked, hubformers.SwinForMaskedImageModeling)
    assert isinstance(AutoBackbone.from_config(config), hubformers.SwinBackbone)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), hubformers.ViTImageProcessor)


@pytest.mark.slow
@pytest.mark.parametrize("named, traced", [(True, (32, 48)), (False, (32, 32))])
def test_torch_export_with_dynamic_batch_height_and_width(named, traced):
    """Exported at one size, the program runs at every size of its range, with named `Dim`s as with
    `Dim.DYNAMIC`: sizes that pad differently at every stage, whose last map is a single window or several, no
    larger than a window (which then shrinks and shifts nothing) or larger, one image or several. Padding,
    window and shift are computed, never branched on."""
    model = hubformers.SwinForImageClassification(hubformers.SwinConfig(**TINY_SWIN)).eval()

    class Logits(torch.nn.Module):
        def __init__(self, swin):
            super().__init__()
            self.swin = swin

        def forward(self, pixel_values):
            return self.swin(pixel_values).logits

    Dim = torch.export.Dim
    if named:
        batch, height, width = Dim("batch", max=64), Dim("height", min=16, max=256), Dim("width", min=16, max=256)
    else:
        batch, height, width = Dim.DYNAMIC(max=64), Dim.DYNAMIC(min=16, max=256), Dim.DYNAMIC(min=16, max=256)
    exported = torch.export.export(
        Logits(model), (torch.randn(2, 3, *traced),), dynamic_shapes={"pixel_values": {0: batch, 2: height, 3: width}}
    )
    sizes = [(2, (32, 48)), (1, (44, 28)), (3, (40, 40)), (2, (64, 56)), (1, (32, 32)), (1, (17, 23)), (1, (16, 16))]
    sizes += [(1, (256, 40)), (5, (33, 250))]
    for batch, size in sizes:
        pixel_values = torch.randn(batch, 3, *size)
        with torch.no_grad():
            expected = model(pixel_values).logits
        assert max_abs_diff(exported.module()(pixel_values), expected) <= TOL, size


@pytest.mark.slow
def test_torch_compile_fullgraph_with_labels():
    model = hubformers.SwinForImageClassification(hubformers.SwinConfig(**TINY_SWIN)).eval()
    pixel_values, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, -100])
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected, got = model(pixel_values, labels=labels), compiled(pixel_values, labels=labels)
    assert max_abs_diff(expected.logits, got.logits) <= TOL and abs(expected.loss - got.loss) <= TOL


def test_ignored_labels_match_transformers(tmp_path):
    """-100 marks a label left out of the single-label loss, as transformers' cross-entropy does; a rejected
    call leaves the config as it was."""
    folder = reference_folder(tmp_path, transformers.SwinForImageClassification)
    reference = transformers.SwinForImageClassification.from_pretrained(folder).eval()
    ours = hubformers.SwinForImageClassification.from_pretrained(folder).eval()
    pixel_values, labels = torch.randn(3, 3, 32, 32), torch.tensor([-100, 2, 0])
    with pytest.raises(ValueError, match=r"multi-label classification needs `labels` of shape \(3, 3\)"):
        ours(pixel_values, labels=labels.float())
    assert ours.config.problem_type is None
    with torch.no_grad():
        expected, got = reference(pixel_values, labels=labels), ours(pixel_values, labels=labels)
    assert abs(expected.loss.item() - got.loss.item()) <= TOL
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\] .* or be -100 \(ignored\), got \[-1\]"):
        ours(pixel_values, labels=torch.tensor([-1, 2, -100]))


# --- bad input: a ValueError that names what was expected and what came -------------------------


@pytest.mark.parametrize(
    "pixel_values, message",
    [
        (torch.randn(2, 1, 32, 32), "must have 3 channels"),
        (torch.randn(2, 3, 1, 32), r"at least one 2x2 patch \(config.patch_size\), got 1x32"),
        (torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "must be floating point.*torch.uint8"),
        (torch.randn(3, 32, 32), r"shape \(batch, 3, height, width\), got \(3, 32, 32\)"),
    ],
)
def test_bad_pixel_values(pixel_values, message):
    model = hubformers.SwinForImageClassification(hubformers.SwinConfig(**TINY_SWIN)).eval()
    with pytest.raises(ValueError, match=message):
        model(pixel_values)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize(
    "pixel_values, message",
    [
        (None, r"`pixel_values` must be a tensor of shape \(batch, 3, height, width\), got NoneType"),
        (torch.randn(0, 3, 32, 32), r"at least one image, got shape \(0, 3, 32, 32\)"),
        (torch.randn(2, 3, 32, 1), r"at least one 2x2 patch \(config.patch_size\), got 32x1"),
    ],
)
def test_bad_images_for_every_head(model_class, pixel_values, message):
    model = model_class(hubformers.SwinConfig(**TINY_SWIN)).eval()
    with pytest.raises(ValueError, match=message):
        model(pixel_values)


def test_bad_mask_and_stride():
    model = hubformers.SwinForMaskedImageModeling(hubformers.SwinConfig(**TINY_SWIN))
    with pytest.raises(ValueError, match=r"bool_masked_pos.*\(2, 256\), got \(2, 255\)"):
        model(torch.randn(2, 3, 32, 32), bool_masked_pos=torch.zeros(2, 255, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"bool_masked_pos.*\(2, 256\), got \(2, 16, 16\)"):
        model(torch.randn(2, 3, 32, 32), bool_masked_pos=torch.zeros(2, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="`bool_masked_pos` needs a model with a mask token"):
        hubformers.SwinModel(model.config)(torch.randn(2, 3, 32, 32), bool_masked_pos=torch.zeros(2, 256).bool())
    with pytest.raises(ValueError, match=r"divisible by the total stride \(8, 8\), got 36x32"):
        model(torch.randn(2, 3, 36, 32), bool_masked_pos=torch.zeros(2, 18 * 16, dtype=torch.bool))
    model = hubformers.SwinForMaskedImageModeling(hubformers.SwinConfig(**{**TINY_SWIN, "encoder_stride": 4}))
    with pytest.raises(ValueError, match=r"encoder_stride.*\(8, 8\).*got encoder_stride=4"):
        model(torch.randn(2, 3, 32, 32), bool_masked_pos=torch.zeros(2, 256, dtype=torch.bool))


def test_absolute_positions_need_interpolation_at_another_size():
    model = hubformers.SwinModel(hubformers.SwinConfig(**TINY_SWIN, use_absolute_embeddings=True)).eval()
    with pytest.raises(ValueError, match=r"\(16, 16\) patch grid, got \(20, 16\).*interpolate_pos_encoding"):
        model(torch.randn(1, 3, 40, 32))
    assert model(torch.randn(1, 3, 40, 32), interpolate_pos_encoding=True).last_hidden_state.shape == (1, 20, 64)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(window_size=0), "`window_size` must be positive, got 0"),
        (dict(window_size=-7), "`window_size` must be positive, got -7"),
        (dict(depths=[2, 0, 2]), r"`depths` must be positive, got \[2, 0, 2\]"),
        (dict(depths=[2, 2]), r"one value per stage, got 2 depths \[2, 2\] and 3 head counts \[2, 2, 4\]"),
        (dict(num_heads=[3, 2, 4]), r"`stage 1 width` \(16\) must be divisible by `num_heads\[0\]` \(3\)"),
        (dict(embed_dim=0), "`embed_dim` must be positive, got 0"),
        (dict(drop_path_rate=1.0), r"must be in \[0, 1\), got 1.0"),
        (dict(hidden_act="swishy"), "`hidden_act` must be one of .*got 'swishy'"),
        (dict(out_features=["stage9"]), "out_features must be a subset of stage_names"),
    ],
)
def test_bad_config_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        hubformers.SwinConfig(**{**TINY_SWIN, **overrides})
