"""ViT: parity with transformers' ViT on the same weights, the Auto classes, attention maps under every
backend, any resolution, export/compile, and clear errors on bad input."""

import pytest
import torch
import transformers
from conftest import TINY_VIT, max_abs_diff
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoProcessor

import hubformers
from hubformers.checks import classification_loss

TOL = 1e-5
MODEL_CLASSES = [hubformers.ViTModel, hubformers.ViTForImageClassification, hubformers.ViTForMaskedImageModeling]


def reference_and_ours(tmp_path, reference_class, our_class, **overrides):
    """A transformers model with random weights, saved, and loaded into our class."""
    reference = reference_class(transformers.ViTConfig(**{**TINY_VIT, **overrides})).eval()
    reference.save_pretrained(tmp_path)
    ours = our_class.from_pretrained(tmp_path).eval()
    return reference, ours


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_classifier_matches_transformers(tmp_path, attn_implementation):
    reference, ours = reference_and_ours(
        tmp_path, transformers.ViTForImageClassification, hubformers.ViTForImageClassification
    )
    ours.set_attn_implementation(attn_implementation)
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values, output_hidden_states=True)
        got = ours(pixel_values, output_hidden_states=True)
    assert max_abs_diff(expected.logits, got.logits) <= TOL
    assert len(got.hidden_states) == len(expected.hidden_states) == TINY_VIT["num_hidden_layers"] + 1
    for e, g in zip(expected.hidden_states, got.hidden_states):
        assert max_abs_diff(e, g) <= TOL


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_classifier_computes_only_the_class_token_in_the_last_layer(tmp_path, attn_implementation):
    reference, ours = reference_and_ours(
        tmp_path, transformers.ViTForImageClassification, hubformers.ViTForImageClassification
    )
    ours.set_attn_implementation(attn_implementation)
    shapes = []
    ours.vit.layers[-1].register_forward_hook(lambda module, args, output: shapes.append(tuple(output.shape)))
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values).logits
        got = ours(pixel_values).logits
        all_tokens = ours(pixel_values, output_hidden_states=True).logits
    assert shapes == [(2, 1, 32), (2, 17, 32)]  # the class token alone, then all 16 patches too
    assert max_abs_diff(expected, got) <= TOL and max_abs_diff(all_tokens, got) <= TOL


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("output_attentions", [False, True])
def test_attention_mask_matches_transformers(tmp_path, attn_implementation, output_attentions):
    """A (batch, 1 + patches) mask hides tokens from every query as in transformers' ViT, also when a call asks
    for the maps (eager for that call, the mask built for it)."""
    reference, ours = reference_and_ours(
        tmp_path, transformers.ViTForImageClassification, hubformers.ViTForImageClassification
    )
    for model in (reference, ours):
        model.set_attn_implementation(attn_implementation)
    pixel_values, mask = torch.randn(2, 3, 32, 32), torch.ones(2, 17, dtype=torch.long)
    mask[0, 3:9] = 0
    with torch.no_grad():
        expected = reference(pixel_values, attention_mask=mask, output_attentions=output_attentions)
        got = ours(pixel_values, attention_mask=mask, output_attentions=output_attentions)
        unmasked = ours(pixel_values).logits
    assert max_abs_diff(expected.logits, got.logits) <= TOL
    assert max_abs_diff(got.logits[0], unmasked[0]) > 1e-3  # the mask changed the first image's logits
    if output_attentions:
        assert all(maps[0, :, :, 3:9].abs().max() == 0 for maps in got.attentions)
    with pytest.raises(ValueError, match=r"attention_mask.*\(2, 17\).*got \(2, 16\)"):
        ours(pixel_values, attention_mask=mask[:, 1:])


def test_base_model_with_pooler_matches_transformers(tmp_path):
    reference, ours = reference_and_ours(tmp_path, transformers.ViTModel, hubformers.ViTModel)
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = reference(pixel_values), ours(pixel_values)
    assert max_abs_diff(expected.last_hidden_state, got.last_hidden_state) <= TOL
    assert max_abs_diff(expected.pooler_output, got.pooler_output) <= TOL


def test_masked_image_modeling_matches_transformers(tmp_path):
    reference, ours = reference_and_ours(
        tmp_path, transformers.ViTForMaskedImageModeling, hubformers.ViTForMaskedImageModeling
    )
    pixel_values = torch.randn(2, 3, 32, 32)
    bool_masked_pos = torch.rand(2, 16) < 0.5
    with torch.no_grad():
        expected, got = reference(pixel_values, bool_masked_pos), ours(pixel_values, bool_masked_pos)
    assert max_abs_diff(expected.reconstruction, got.reconstruction) <= TOL
    assert abs(expected.loss.item() - got.loss.item()) <= TOL


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_attention_maps_under_every_backend(tmp_path, attn_implementation):
    """sdpa never forms the maps; asking for them runs the eager path for that call, same result."""
    reference, ours = reference_and_ours(tmp_path, transformers.ViTModel, hubformers.ViTModel)
    reference.set_attn_implementation("eager")
    ours.set_attn_implementation(attn_implementation)
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values, output_attentions=True)
        got = ours(pixel_values, output_attentions=True)
        plain = ours(pixel_values)
    assert len(got.attentions) == TINY_VIT["num_hidden_layers"]
    assert got.attentions[0].shape == (2, 4, 17, 17)
    for e, g in zip(expected.attentions, got.attentions):
        assert max_abs_diff(e, g) <= TOL
    assert plain.attentions is None
    assert max_abs_diff(plain.last_hidden_state, got.last_hidden_state) <= TOL
    assert ours.config._attn_implementation == attn_implementation


def test_attention_maps_requested_through_the_config():
    config = hubformers.ViTConfig(**TINY_VIT, output_attentions=True)
    model = hubformers.ViTModel(config).eval()
    model.set_attn_implementation("sdpa")
    out = model(torch.randn(1, 3, 32, 32))
    assert len(out.attentions) == 2
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(1, 4, 17))


@pytest.mark.parametrize("our_class", MODEL_CLASSES)
def test_outputs_requested_through_the_config_match_transformers(tmp_path, our_class):
    """`config.output_hidden_states` / `output_attentions` give what the call's arguments give, as in
    transformers (its own model, configured the same way, is the oracle)."""
    reference_class = getattr(transformers, our_class.__name__)
    reference, ours = reference_and_ours(tmp_path, reference_class, our_class)
    for model in (reference, ours):
        model.set_attn_implementation("eager")
        model.config.output_hidden_states = model.config.output_attentions = True
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = reference(pixel_values), ours(pixel_values)
    for name in ("hidden_states", "attentions"):
        assert len(got[name]) == len(expected[name]) == TINY_VIT["num_hidden_layers"] + (name == "hidden_states")
        for e, g in zip(expected[name], got[name]):
            assert e.shape == g.shape and max_abs_diff(e, g) <= TOL, name


def test_auto_classes_resolve_to_ours(tmp_path):
    config = hubformers.ViTConfig(**TINY_VIT)
    hubformers.ViTForImageClassification(config).save_pretrained(tmp_path)
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), hubformers.ViTConfig)
    assert AutoConfig.for_model("hubformers_vit").__class__ is hubformers.ViTConfig
    assert isinstance(AutoModel.from_pretrained(tmp_path), hubformers.ViTModel)
    assert isinstance(AutoModelForImageClassification.from_pretrained(tmp_path), hubformers.ViTForImageClassification)
    masked = transformers.AutoModelForMaskedImageModeling.from_config(config)
    assert isinstance(masked, hubformers.ViTForMaskedImageModeling)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), hubformers.ViTImageProcessor)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), hubformers.ViTImageProcessor)


def test_pipeline_classifies_with_our_model(tmp_path):
    from PIL import Image

    config = hubformers.ViTConfig(**TINY_VIT, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    hubformers.ViTForImageClassification(config).save_pretrained(tmp_path)
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    classify = transformers.pipeline("image-classification", model=str(tmp_path))
    predictions = classify(Image.new("RGB", (50, 40), "red"), top_k=3)
    assert sorted(p["label"] for p in predictions) == ["a", "b", "c"]
    assert abs(sum(p["score"] for p in predictions) - 1.0) < 1e-4


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_image_processor_matches_transformers(backend):
    from PIL import Image

    image = Image.fromarray(torch.randint(0, 256, (40, 56, 3), dtype=torch.uint8).numpy())
    our_class = hubformers.ViTImageProcessor if backend == "torchvision" else hubformers.ViTImageProcessorPil
    reference_class = transformers.ViTImageProcessor if backend == "torchvision" else transformers.ViTImageProcessorPil
    expected = reference_class()(image, return_tensors="pt").pixel_values
    got = our_class()(image, return_tensors="pt").pixel_values
    assert got.shape == (1, 3, 224, 224)
    assert max_abs_diff(expected, got) <= TOL


@pytest.mark.parametrize("size", [(32, 32), (48, 32), (24, 40)])
def test_interpolate_pos_encoding_any_resolution(tmp_path, size):
    reference, ours = reference_and_ours(tmp_path, transformers.ViTModel, hubformers.ViTModel)
    pixel_values = torch.randn(2, 3, *size)
    with torch.no_grad():
        got = ours(pixel_values, interpolate_pos_encoding=True).last_hidden_state
    assert got.shape == (2, 1 + (size[0] // 8) * (size[1] // 8), 32)
    if size[0] == size[1]:  # transformers' own interpolation is defined for square inputs only
        with torch.no_grad():
            expected = reference(pixel_values, interpolate_pos_encoding=True).last_hidden_state
        assert max_abs_diff(expected, got) <= TOL


def test_non_square_model():
    config = hubformers.ViTConfig(**{**TINY_VIT, "image_size": (16, 48)})
    model = hubformers.ViTForMaskedImageModeling(config).eval()
    pixel_values = torch.randn(2, 3, 16, 48)
    out = model(pixel_values, bool_masked_pos=torch.rand(2, 12) < 0.5)
    assert out.reconstruction.shape == pixel_values.shape and out.loss.item() > 0


@pytest.mark.parametrize(
    "problem_type, labels",
    [
        ("single_label_classification", torch.tensor([0, 2])),
        ("multi_label_classification", torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),
        ("regression", torch.randn(2, 3)),
    ],
)
def test_losses_follow_problem_type(problem_type, labels):
    config = hubformers.ViTConfig(**TINY_VIT, problem_type=problem_type)
    model = hubformers.ViTForImageClassification(config)
    out = model(torch.randn(2, 3, 32, 32), labels=labels)
    logits = out.logits
    expected = {
        "single_label_classification": lambda: torch.nn.functional.cross_entropy(logits, labels),
        "multi_label_classification": lambda: torch.nn.functional.binary_cross_entropy_with_logits(logits, labels),
        "regression": lambda: torch.nn.functional.mse_loss(logits, labels),
    }[problem_type]()
    assert abs(out.loss.item() - expected.item()) <= 1e-6


def test_ignored_labels_match_transformers(tmp_path):
    """-100 marks a label left out of the single-label loss, as transformers' cross-entropy does."""
    reference, ours = reference_and_ours(
        tmp_path, transformers.ViTForImageClassification, hubformers.ViTForImageClassification
    )
    pixel_values, labels = torch.randn(4, 3, 32, 32), torch.tensor([2, -100, 0, -100])
    with torch.no_grad():
        expected, got = reference(pixel_values, labels=labels), ours(pixel_values, labels=labels)
        kept = torch.nn.functional.cross_entropy(got.logits[[0, 2]], labels[[0, 2]])
    assert abs(expected.loss.item() - got.loss.item()) <= TOL
    assert abs(kept.item() - got.loss.item()) <= 1e-6


def test_problem_type_is_decided_per_call():
    """Without `config.problem_type` every call infers it from its own labels and the config stays unset: a
    refused call changes nothing, and integer labels after float ones (or the other way round) still work."""
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT)).eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"multi-label classification needs `labels` of shape \(2, 3\)"):
        model(pixel_values, labels=torch.tensor([0.0, 1.0]))
    assert model.config.problem_type is None
    with torch.no_grad():
        logits = model(pixel_values).logits
        single = model(pixel_values, labels=torch.tensor([0, 2])).loss
        multi_labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
        multi = model(pixel_values, labels=multi_labels).loss
        again = model(pixel_values, labels=torch.tensor([0, 2])).loss
    assert model.config.problem_type is None
    assert abs(single.item() - torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).item()) <= 1e-6
    expected_multi = torch.nn.functional.binary_cross_entropy_with_logits(logits, multi_labels)
    assert abs(multi.item() - expected_multi.item()) <= 1e-6 and again.item() == single.item()
    # a type the user set is kept, and labels of another kind are refused
    model.config.problem_type = "multi_label_classification"
    with pytest.raises(ValueError, match="multi-label"):
        model(pixel_values, labels=torch.tensor([0, 2]))
    assert model.config.problem_type == "multi_label_classification"


def test_label_checks_compile_without_graph_breaks():
    """The label checks and the loss trace into one graph (no host read of the labels' values); out-of-range
    labels still fail in the compiled call, through an asynchronous assert."""
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT))
    logits = torch.randn(4, 3)
    compiled = torch.compile(lambda labels: classification_loss(model, labels, logits), fullgraph=True, backend="eager")
    labels = torch.tensor([2, -100, 0, 1])
    assert abs(compiled(labels).item() - torch.nn.functional.cross_entropy(logits, labels).item()) <= 1e-6
    with pytest.raises(RuntimeError, match=r"must lie in \[0, 2\].*or be -100"):
        compiled(torch.tensor([2, 3, 0, 1]))
    assert model.config.problem_type is None


@pytest.mark.slow
def test_torch_compile_fullgraph_with_labels():
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT)).eval()
    pixel_values, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, -100])
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        expected, got = model(pixel_values, labels=labels), compiled(pixel_values, labels=labels)
    assert max_abs_diff(expected.logits, got.logits) <= 1e-4 and abs(expected.loss - got.loss) <= 1e-4


def test_torch_export_with_dynamic_height_and_width():
    model = hubformers.ViTModel(hubformers.ViTConfig(**TINY_VIT), add_pooling_layer=False).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, vit):
            super().__init__()
            self.vit = vit

        def forward(self, pixel_values):
            return self.vit(pixel_values, interpolate_pos_encoding=True).last_hidden_state

    height = torch.export.Dim("height", min=2, max=64) * 8
    width = torch.export.Dim("width", min=2, max=64) * 8
    exported = torch.export.export(
        Wrapper(model),
        (torch.randn(2, 3, 32, 32),),
        dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", max=64), 2: height, 3: width}},
    )
    for batch, size in [(2, (32, 32)), (3, (48, 24)), (1, (16, 64))]:
        pixel_values = torch.randn(batch, 3, *size)
        with torch.no_grad():
            expected = model(pixel_values, interpolate_pos_encoding=True).last_hidden_state
        assert max_abs_diff(exported.module()(pixel_values), expected) <= TOL


@pytest.mark.slow
def test_torch_compile_fullgraph():
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT)).eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert max_abs_diff(compiled(pixel_values).logits, model(pixel_values).logits) <= 1e-4


@pytest.mark.slow
def test_flex_attention_matches_eager():
    model = hubformers.ViTModel(hubformers.ViTConfig(**TINY_VIT)).eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values).last_hidden_state
        model.set_attn_implementation("flex_attention")
        got = model(pixel_values)
        maps = model(pixel_values, output_attentions=True).attentions
    assert max_abs_diff(expected, got.last_hidden_state) <= 1e-4
    assert maps is not None and maps[0].shape == (2, 4, 17, 17)


# --- bad input: a ValueError that names what was expected and what came -------------------------


@pytest.fixture(scope="module")
def classifier():
    return hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT)).eval()


@pytest.mark.parametrize(
    "pixel_values, message",
    [
        (torch.randn(2, 1, 32, 32), "must have 3 channels"),
        (torch.randn(2, 3, 48, 48), r"Input image size \(48, 48\).*\(32, 32\)"),
        (torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "must be floating point.*torch.uint8"),
        (torch.randn(3, 32, 32), r"shape \(batch, 3, height, width\), got \(3, 32, 32\)"),
    ],
)
def test_bad_pixel_values(classifier, pixel_values, message):
    with pytest.raises(ValueError, match=message):
        classifier(pixel_values)


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.tensor([0, 3]), r"must lie in \[0, 2\].*got \[3\]"),
        (torch.tensor([-1, 0]), r"must lie in \[0, 2\]"),
        (torch.tensor([-100, 5]), r"must lie in \[0, 2\] .* or be -100 \(ignored\), got \[5\]"),
        (torch.tensor([[0], [1]]), r"shape \(2,\), got torch.int64 of shape \(2, 1\)"),
    ],
)
def test_bad_labels(labels, message):
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT))
    with pytest.raises(ValueError, match=message):
        model(torch.randn(2, 3, 32, 32), labels=labels)


def test_bad_multi_label_shape():
    config = hubformers.ViTConfig(**TINY_VIT, problem_type="multi_label_classification")
    with pytest.raises(ValueError, match=r"shape \(2, 3\), got \(2, 2\)"):
        hubformers.ViTForImageClassification(config)(torch.randn(2, 3, 32, 32), labels=torch.ones(2, 2))


def test_bad_mask_shape():
    model = hubformers.ViTForMaskedImageModeling(hubformers.ViTConfig(**TINY_VIT))
    with pytest.raises(ValueError, match=r"bool_masked_pos.*\(2, 16\), got \(2, 15\)"):
        model(torch.randn(2, 3, 32, 32), bool_masked_pos=torch.zeros(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"bool_masked_pos.*\(2, 16\), got \(2, 4, 4\)"):
        model(torch.randn(2, 3, 32, 32), bool_masked_pos=torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="`bool_masked_pos` needs a model with a mask token"):
        hubformers.ViTModel(model.config)(torch.randn(2, 3, 32, 32), bool_masked_pos=torch.zeros(2, 16).bool())


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize(
    "pixel_values, message, interpolate",
    [
        (None, r"`pixel_values` must be a tensor of shape \(batch, 3, height, width\), got NoneType", False),
        (torch.randn(0, 3, 32, 32), r"at least one image, got shape \(0, 3, 32, 32\)", False),
        (torch.randn(2, 3, 4, 32), r"at least one 8x8 patch \(config.patch_size\), got 4x32", False),
        (torch.randn(2, 3, 32, 7), r"at least one 8x8 patch \(config.patch_size\), got 32x7", True),
    ],
)
def test_bad_images_for_every_head(model_class, pixel_values, message, interpolate):
    model = model_class(hubformers.ViTConfig(**TINY_VIT)).eval()
    with pytest.raises(ValueError, match=message):
        model(pixel_values, interpolate_pos_encoding=interpolate)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=30), r"`hidden_size` \(30\) must be divisible by `num_attention_heads` \(4\)"),
        (dict(image_size=36), r"`image_size` \(36\) must be divisible by `patch_size` \(8\)"),
        (dict(num_hidden_layers=0), "`num_hidden_layers` must be positive, got 0"),
        (dict(patch_size=(8, -8)), r"`patch_size` must be positive, got \(8, -8\)"),
        (dict(hidden_act="swishy"), "`hidden_act` must be one of .*got 'swishy'"),
        (dict(attention_probs_dropout_prob=1.5), r"must be in \[0, 1\), got 1.5"),
    ],
)
def test_bad_config_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        hubformers.ViTConfig(**{**TINY_VIT, **overrides})
