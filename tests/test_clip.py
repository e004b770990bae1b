"""CLIP: parity with transformers' CLIP on the same weights (joint model and every tower class, both ways, every
attention backend), the loss and the clamped logit scale, the Auto classes, remote code and the Hub, and clear
errors on bad input."""

import inspect
import uuid
from typing import Unpack

import pytest
import torch
import transformers
from conftest import max_abs_diff
from test_remote_code import run_without_hubformers
from transformers import AutoConfig, AutoModel, AutoModelForZeroShotImageClassification
from transformers.utils import TransformersKwargs

import hubformers

TOL = 1e-5
EOS = 999
TINY_TEXT = dict(
    vocab_size=1000,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=16,
    bos_token_id=998,
    eos_token_id=EOS,
    projection_dim=24,
)
TINY_VISION = dict(
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=96,
    image_size=32,
    patch_size=8,
    projection_dim=24,
)
TINY_CLIP = dict(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=24)


def texts(batch_size: int = 3, length: int = 12, eos_positions=(5, 11, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids ending at an end-of-text token and padded after it (with end-of-text, as transformers'
    CLIP tokenizer pads), and the attention mask that marks the padding."""
    input_ids = torch.randint(0, EOS - 1, (batch_size, length))
    attention_mask = torch.ones_like(input_ids)
    for row, position in enumerate(eos_positions[:batch_size]):
        input_ids[row, position:] = EOS
        attention_mask[row, position + 1 :] = 0
    return input_ids, attention_mask


def images(batch_size: int = 3) -> torch.Tensor:
    return torch.randn(batch_size, 3, 32, 32)


def saved_reference(tmp_path, **overrides) -> transformers.CLIPModel:
    """transformers' CLIPModel with random weights, saved to tmp_path."""
    config = transformers.CLIPConfig(**{**TINY_CLIP, **overrides})
    reference = transformers.CLIPModel(config).eval()
    reference.save_pretrained(tmp_path)
    return reference


def tiny_clip() -> hubformers.CLIPModel:
    return hubformers.CLIPModel(hubformers.CLIPConfig(**TINY_CLIP)).eval()


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_clip_model_matches_transformers(tmp_path, attn_implementation):
    reference = saved_reference(tmp_path)
    ours = hubformers.CLIPModel.from_pretrained(tmp_path).eval()
    reference.set_attn_implementation(attn_implementation)
    ours.set_attn_implementation(attn_implementation)
    assert ours.text_model.config._attn_implementation == attn_implementation
    input_ids, attention_mask = texts()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images(), return_loss=True)
    with torch.no_grad():
        expected = reference(**inputs, output_hidden_states=True)
        got = ours(**inputs, output_hidden_states=True)
    for name in ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds", "loss"]:
        assert max_abs_diff(getattr(expected, name), getattr(got, name)) <= TOL, name
    for tower in ["text_model_output", "vision_model_output"]:
        e, g = getattr(expected, tower), getattr(got, tower)
        assert max_abs_diff(e.last_hidden_state, g.last_hidden_state) <= TOL, tower
        assert max_abs_diff(e.pooler_output, g.pooler_output) <= TOL, tower
        assert len(g.hidden_states) == len(e.hidden_states) == 3
        for e_state, g_state in zip(e.hidden_states, g.hidden_states):
            assert max_abs_diff(e_state, g_state) <= TOL, tower


def test_features_and_attention_maps_match_transformers(tmp_path):
    reference = saved_reference(tmp_path)
    ours = hubformers.CLIPModel.from_pretrained(tmp_path).eval()  # sdpa: asking for maps runs eager for the call
    reference.set_attn_implementation("eager")
    input_ids, attention_mask = texts()
    pixel_values = images()
    with torch.no_grad():
        for method, inputs in [
            ("get_text_features", dict(input_ids=input_ids, attention_mask=attention_mask)),
            ("get_image_features", dict(pixel_values=pixel_values)),
        ]:
            expected = getattr(reference, method)(**inputs, output_attentions=True)
            got = getattr(ours, method)(**inputs, output_attentions=True)
            assert max_abs_diff(expected.pooler_output, got.pooler_output) <= TOL, method
            assert len(got.attentions) == 2
            for e, g in zip(expected.attentions, got.attentions):
                assert max_abs_diff(e, g) <= TOL, method
    assert got.attentions[0].shape == (3, 4, 17, 17)


@pytest.mark.parametrize(
    "reference_class, our_class, output",
    [
        (transformers.CLIPTextModel, hubformers.CLIPTextModel, "pooler_output"),
        (transformers.CLIPVisionModel, hubformers.CLIPVisionModel, "pooler_output"),
        (transformers.CLIPTextModelWithProjection, hubformers.CLIPTextModelWithProjection, "text_embeds"),
        (transformers.CLIPVisionModelWithProjection, hubformers.CLIPVisionModelWithProjection, "image_embeds"),
    ],
)
def test_towers_match_transformers_from_either_folder(tmp_path, reference_class, our_class, output):
    """Each tower class loads from a CLIPModel folder and from a folder of transformers' class of that name."""
    joint = saved_reference(tmp_path / "joint")
    is_text = "Text" in reference_class.__name__
    inputs = dict(zip(["input_ids", "attention_mask"], texts())) if is_text else dict(pixel_values=images())
    tower = reference_class.from_pretrained(tmp_path / "joint").eval()
    tower.save_pretrained(tmp_path / "tower")
    for folder in ["joint", "tower"]:
        ours = our_class.from_pretrained(tmp_path / folder).eval()
        with torch.no_grad():
            expected, got = getattr(tower(**inputs), output), getattr(ours(**inputs), output)
        assert max_abs_diff(expected, got) <= TOL, folder
    with torch.no_grad():
        joint_features = (joint.get_text_features if is_text else joint.get_image_features)(**inputs).pooler_output
    if output.endswith("embeds"):
        assert max_abs_diff(joint_features, got) <= TOL


def test_legacy_eos_token_id_of_openai_checkpoints(tmp_path):
    """openai/clip-vit-base-patch32's config says eos_token_id=2; with CLIP's vocabulary that means 49407, and
    pooling at the first 49407 agrees with transformers' legacy rule (the highest id) on tokenizer output."""
    text_config = {**TINY_TEXT, "vocab_size": 49408, "eos_token_id": 2, "bos_token_id": 0}
    reference = saved_reference(tmp_path, text_config=text_config)
    ours = hubformers.CLIPModel.from_pretrained(tmp_path).eval()
    assert ours.config.text_config.eos_token_id == 49407
    input_ids = torch.randint(0, 49406, (3, 12))
    for row, position in enumerate([4, 11, 7]):
        input_ids[row, position:] = 49407
    with torch.no_grad():
        expected = reference.get_text_features(input_ids=input_ids).pooler_output
        got = ours.get_text_features(input_ids=input_ids).pooler_output
    assert max_abs_diff(expected, got) <= TOL


def test_pooling_uses_the_first_end_of_text_token():
    """Tokens added after the vocabulary (ids above end-of-text) do not move the pooled position."""
    model = hubformers.CLIPTextModel(hubformers.CLIPTextConfig(**{**TINY_TEXT, "vocab_size": 1002})).eval()
    input_ids, _ = texts(eos_positions=(5, 11, 8))
    with_added = input_ids.clone()
    with_added[:, 1] = 1001  # an added token before the end-of-text
    with torch.no_grad():
        out = model(with_added)
    rows = torch.arange(3)
    assert torch.equal(out.pooler_output, out.last_hidden_state[rows, torch.tensor([5, 11, 8])])


def test_interpolate_pos_encoding_matches_transformers(tmp_path):
    reference = saved_reference(tmp_path)
    ours = hubformers.CLIPModel.from_pretrained(tmp_path).eval()
    for size in [(32, 32), (48, 48)]:
        pixel_values = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = reference.get_image_features(pixel_values, interpolate_pos_encoding=True).pooler_output
            got = ours.get_image_features(pixel_values, interpolate_pos_encoding=True).pooler_output
        assert max_abs_diff(expected, got) <= TOL, size
    with torch.no_grad():
        non_square = ours.get_image_features(torch.randn(2, 3, 48, 24), interpolate_pos_encoding=True)
    assert non_square.last_hidden_state.shape == (2, 1 + 6 * 3, 48)


def test_symmetric_contrastive_loss():
    model = tiny_clip()
    input_ids, attention_mask = texts()
    out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images(), return_loss=True)
    logits = out.logits_per_text
    assert torch.equal(out.logits_per_image, logits.t())
    targets = torch.arange(3)
    expected = (
        torch.nn.functional.cross_entropy(logits, targets) + torch.nn.functional.cross_entropy(logits.t(), targets)
    ) / 2
    assert abs(out.loss.item() - expected.item()) <= 1e-6
    scale = model.logit_scale.exp()
    cosine = out.text_embeds @ out.image_embeds.t()
    assert max_abs_diff(logits, cosine * scale) <= 1e-5
    assert max_abs_diff(out.text_embeds.norm(dim=-1), torch.ones(3)) <= 1e-6


def test_logit_scale_is_learned_and_clamped():
    model = tiny_clip()
    input_ids, attention_mask = texts()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images())
    model(**inputs, return_loss=True).loss.backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.abs() > 0
    with torch.no_grad():
        cosine = model(**inputs).text_embeds @ model(**inputs).image_embeds.t()
        model.logit_scale.fill_(10.0)  # exp(10) ~ 22,000: clamped to 100
        assert max_abs_diff(model(**inputs).logits_per_text, cosine * 100) <= 1e-4
        model.logit_scale.fill_(-3.0)  # below 0: clamped to a scale of 1
        assert max_abs_diff(model(**inputs).logits_per_text, cosine) <= 1e-6


def test_auto_classes_resolve_to_ours(tmp_path):
    tiny_clip().save_pretrained(tmp_path / "joint")
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "joint"), hubformers.CLIPConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path / "joint"), hubformers.CLIPModel)
    assert isinstance(AutoModelForZeroShotImageClassification.from_pretrained(tmp_path / "joint"), hubformers.CLIPModel)
    hubformers.CLIPTextModel(hubformers.CLIPTextConfig(**TINY_TEXT)).save_pretrained(tmp_path / "text")
    assert isinstance(AutoModel.from_pretrained(tmp_path / "text"), hubformers.CLIPTextModel)
    hubformers.CLIPVisionModel(hubformers.CLIPVisionConfig(**TINY_VISION)).save_pretrained(tmp_path / "vision")
    assert isinstance(AutoModel.from_pretrained(tmp_path / "vision"), hubformers.CLIPVisionModel)
    assert AutoConfig.for_model("hubformers_clip").__class__ is hubformers.CLIPConfig


def test_remote_code_and_hub_round_trip(tmp_path, hub):
    """Pushed to the (loopback) Hub, the model loads with trust_remote_code=True where hubformers is not
    installed, with the same logits."""
    from hubformers.scripts.build_clip_tokenizer import build_clip_tokenizer

    model = tiny_clip()
    repo_id = f"user/clip-{uuid.uuid4().hex[:8]}"
    model.push_to_hub(repo_id)
    tokenizer = build_clip_tokenizer(model_max_length=TINY_TEXT["max_position_embeddings"])
    hubformers.CLIPImageTextProcessor(hubformers.clip_image_processor(32), tokenizer).push_to_hub(repo_id)
    input_ids, attention_mask = texts()
    pixel_values = images()
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values).logits_per_image
    torch.save(
        dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, logits=logits),
        tmp_path / "expected.pt",
    )
    pulled = AutoModel.from_pretrained(repo_id)
    assert isinstance(pulled, hubformers.CLIPModel)
    for name, tensor in pulled.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    out = run_without_hubformers(
        tmp_path,
        f"""
        from transformers import AutoModelForZeroShotImageClassification
        expected = torch.load("expected.pt")
        logits = expected.pop("logits")
        model = AutoModelForZeroShotImageClassification.from_pretrained("{repo_id}", trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            print("diff", (model(**expected).logits_per_image - logits).abs().max().item())
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)
        assert type(processor).__name__ == "CLIPImageTextProcessor", type(processor)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        input_ids = processor(text=["word " * 40]).input_ids[0]
        print("tokens", input_ids[-1], len(input_ids))
        """,
    )
    assert "tokens 49407 16" in out  # truncated to the position table by default, end-of-text kept
    assert float(out.split("diff")[-1].split()[0]) <= 1e-6


# --- bad input: a ValueError that names what was expected and what came -------------------------


def test_text_longer_than_the_position_table():
    input_ids, _ = texts(length=20, eos_positions=(19, 19, 19))
    with pytest.raises(ValueError, match="20 tokens, more than the 16 positions"):
        tiny_clip().get_text_features(input_ids)


def test_text_without_end_of_text_token():
    input_ids, _ = texts()
    input_ids[1] = 5
    with pytest.raises(ValueError, match=r"end-of-text token \(eos_token_id=999\).*got none in texts \[1\]"):
        tiny_clip().get_text_features(input_ids)


def test_loss_needs_as_many_texts_as_images():
    input_ids, attention_mask = texts()
    with pytest.raises(ValueError, match=r"one text per image.*got 2 images and 3 texts"):
        tiny_clip()(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images(2), return_loss=True)
    # without the loss, any numbers of images and texts are fine (zero-shot classification)
    assert tiny_clip()(input_ids=input_ids, pixel_values=images(2)).logits_per_image.shape == (2, 3)


@pytest.mark.parametrize(
    "inputs, message",
    [
        (dict(pixel_values=images()), "needs both `input_ids` and `pixel_values`, got no input_ids"),
        (dict(input_ids=texts()[0]), "got no pixel_values"),
        (dict(), "got no input_ids and no pixel_values"),
        (dict(input_ids=texts()[0].float(), pixel_values=images()), "must be integers of shape"),
        (dict(input_ids=texts()[0], pixel_values=torch.randn(3, 1, 32, 32)), "must have 3 channels"),
        (dict(input_ids=texts()[0], pixel_values=torch.randn(3, 3, 40, 40)), r"Input image size \(40, 40\)"),
    ],
)
def test_missing_or_malformed_inputs(inputs, message):
    with pytest.raises(ValueError, match=message):
        tiny_clip()(**inputs)


def text_entry_points():
    """Every way into the text tower, each as inputs -> output, on one set of weights."""
    joint = tiny_clip()
    with_projection = hubformers.CLIPTextModelWithProjection(joint.config.text_config).eval()
    with_projection.text_model.load_state_dict(joint.text_model.state_dict())
    return {
        "CLIPTextModel": joint.text_model,
        "CLIPTextModelWithProjection": with_projection,
        "get_text_features": joint.get_text_features,
        "CLIPModel": lambda **inputs: joint(**inputs, pixel_values=images()),
    }


def positions(*shape, start=0):
    return torch.arange(start, start + shape[-1]).expand(*shape)


@pytest.mark.parametrize("entry", ["CLIPTextModel", "CLIPTextModelWithProjection", "get_text_features", "CLIPModel"])
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(token=1000), r"`input_ids` must lie in \[0, 999\] \(vocab_size=1000\), got \[1000\]"),
        (dict(token=-1), r"`input_ids` must lie in \[0, 999\] \(vocab_size=1000\), got \[-1\]"),
        (dict(position_ids=positions(1, 12, start=5)), r"`position_ids` must lie in \[0, 15\] .*got \[16\]"),
        (dict(position_ids=positions(3, 12, start=-1)), r"`position_ids` must lie in \[0, 15\] .*got \[-1\]"),
        (dict(position_ids=positions(2, 12)), r"`position_ids` must be integers of shape .*got .* \(2, 12\)"),
        (dict(position_ids=positions(1, 11)), r"shape \(12,\), \(1, 12\) or \(3, 12\), got .* \(1, 11\)"),
        (dict(attention_mask=torch.ones(3, 5)), r"`attention_mask` must have the shape of `input_ids` \(3, 12\)"),
        (dict(attention_mask=torch.ones(12)), r"\(3, 12\) \(batch, length\), got \(12,\)"),
        (dict(rows=slice(0, 0)), r"at least one text of at least one token, got shape \(0, 12\)"),
        (dict(columns=slice(0, 0)), r"at least one text of at least one token, got shape \(3, 0\)"),
        (dict(length=20), "20 tokens, more than the 16 positions"),
    ],
    ids=lambda value: "" if isinstance(value, str) else "-".join(value),
)
def test_text_inputs_outside_the_tables(entry, change, message):
    """Where transformers' CLIP fails with an IndexError or a reshape error, every text entry point names the
    expected and the received ids, positions, mask shape or batch."""
    input_ids, attention_mask = texts(length=change.get("length", 12), eos_positions=(5, 11, 8))
    if "token" in change:
        input_ids[1, 2] = change["token"]
    input_ids = input_ids[change.get("rows", slice(None)), change.get("columns", slice(None))]
    inputs = dict(input_ids=input_ids, attention_mask=change.get("attention_mask", attention_mask[: len(input_ids)]))
    if "position_ids" in change:
        inputs["position_ids"] = change["position_ids"]
    with pytest.raises(ValueError, match=message):
        text_entry_points()[entry](**inputs)


def test_valid_position_ids_are_taken():
    """(length,), (1, length) and (batch, length) positions, as transformers' CLIP takes them, give its outputs."""
    model = hubformers.CLIPTextModel(hubformers.CLIPTextConfig(**TINY_TEXT)).eval()
    reference = transformers.CLIPTextModel(transformers.CLIPTextConfig(**TINY_TEXT)).eval()
    reference.load_state_dict(model.state_dict())
    input_ids, attention_mask = texts()
    for position_ids in [positions(12, start=4), positions(1, 12, start=4), torch.randint(0, 16, (3, 12))]:
        with torch.no_grad():
            expected = reference(input_ids, attention_mask, position_ids).last_hidden_state
            got = model(input_ids, attention_mask, position_ids).last_hidden_state
        assert max_abs_diff(expected, got) <= TOL


@pytest.mark.parametrize(
    "entry", ["CLIPVisionModel", "CLIPVisionModelWithProjection", "get_image_features", "CLIPModel"]
)
@pytest.mark.parametrize(
    "pixel_values, interpolate, message",
    [
        (None, False, "`pixel_values` are missing"),
        (torch.randn(0, 3, 32, 32), False, r"at least one image, got shape \(0, 3, 32, 32\)"),
        (torch.randn(2, 3, 4, 4), True, r"at least one 8x8 patch \(config.patch_size\), got 4x4"),
        (torch.randn(2, 3, 32, 6), True, r"at least one 8x8 patch .*got 32x6"),
    ],
    ids=["none", "empty-batch", "4x4", "32x6"],
)
def test_bad_images_for_the_vision_tower(entry, pixel_values, interpolate, message):
    joint = tiny_clip()
    with_projection = hubformers.CLIPVisionModelWithProjection(joint.config.vision_config).eval()
    call = {
        "CLIPVisionModel": joint.vision_model,
        "CLIPVisionModelWithProjection": with_projection,
        "get_image_features": joint.get_image_features,
        "CLIPModel": lambda **inputs: joint(input_ids=texts()[0], **inputs),
    }[entry]
    if pixel_values is None and entry == "CLIPModel":
        message = "got no pixel_values"
    with pytest.raises(ValueError, match=message):
        call(pixel_values=pixel_values, interpolate_pos_encoding=interpolate)


def test_rejected_calls_leave_the_model_as_it_was():
    model = tiny_clip()
    input_ids, attention_mask = texts()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images(), return_loss=True)
    config, weights = model.config.to_dict(), {name: t.clone() for name, t in model.state_dict().items()}
    with torch.no_grad():
        before = model(**inputs)
        bad_ids = input_ids.clone()
        bad_ids[0, 0] = 5000
        for bad in [dict(input_ids=bad_ids), dict(attention_mask=attention_mask[:, :3]), dict(pixel_values=None)]:
            with pytest.raises(ValueError):
                model(**{**inputs, **bad}, output_attentions=True, output_hidden_states=True)
        after = model(**inputs)
    assert model.config.to_dict() == config
    assert all(torch.equal(t, weights[name]) for name, t in model.state_dict().items())
    assert after.text_model_output.attentions is None and after.vision_model_output.hidden_states is None
    assert torch.equal(before.logits_per_image, after.logits_per_image) and torch.equal(before.loss, after.loss)


@pytest.mark.parametrize(
    "method",
    [
        hubformers.CLIPModel.forward,
        hubformers.CLIPModel.get_text_features,
        hubformers.CLIPModel.get_image_features,
        hubformers.CLIPTextModel.forward,
        hubformers.CLIPVisionModel.forward,
        hubformers.CLIPTextModelWithProjection.forward,
        hubformers.CLIPVisionModelWithProjection.forward,
    ],
    ids=lambda method: method.__qualname__,
)
def test_keyword_arguments_are_typed_as_transformers_kwargs(method):
    """Signature readers (IDEs, transformers' docs and checks) see output_attentions and the rest, in the feature
    methods too (the shared model tests check the forwards)."""
    assert inspect.signature(method).parameters["kwargs"].annotation == Unpack[TransformersKwargs]


def test_output_flags_in_the_tower_configs_match_transformers(tmp_path):
    """output_hidden_states / output_attentions set in the tower configs (not only per call) return the same
    tensors as transformers' CLIPModel; eager attention, as transformers requires for the attentions flag."""
    saved_reference(tmp_path)
    reference = transformers.CLIPModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ours = hubformers.CLIPModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    for model in (reference, ours):
        for tower_config in (model.config.text_config, model.config.vision_config):
            tower_config.output_hidden_states = tower_config.output_attentions = True
    input_ids, attention_mask = texts()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images())
    with torch.no_grad():
        expected, got = reference(**inputs), ours(**inputs)
    for tower in ["text_model_output", "vision_model_output"]:
        for name in ["hidden_states", "attentions"]:
            e, g = getattr(getattr(expected, tower), name), getattr(getattr(got, tower), name)
            assert g is not None and len(g) == len(e) > 0, (tower, name)
            assert all(max_abs_diff(a, b) <= TOL for a, b in zip(e, g)), (tower, name)


def test_resize_token_embeddings_matches_transformers(tmp_path):
    """New rows at the end of the table, the config follows, old ids give the same outputs, and the new ids are
    accepted and embedded as transformers embeds them."""
    saved_reference(tmp_path)
    reference = transformers.CLIPTextModel.from_pretrained(tmp_path).eval()
    ours = hubformers.CLIPTextModel.from_pretrained(tmp_path).eval()
    input_ids, attention_mask = texts()
    with torch.no_grad():
        before = ours(input_ids, attention_mask).last_hidden_state
        old_rows = ours.get_input_embeddings().weight.clone()
    for model in (reference, ours):
        assert model.resize_token_embeddings(1008).weight.shape == (1008, 32)
        assert model.config.vocab_size == 1008
    with torch.no_grad():
        reference.get_input_embeddings().weight.copy_(ours.get_input_embeddings().weight)
        assert torch.equal(ours.get_input_embeddings().weight[:1000], old_rows)
        assert max_abs_diff(ours(input_ids, attention_mask).last_hidden_state, before) <= TOL
        new_ids = input_ids.clone()
        new_ids[:, 1:4] = torch.tensor([1000, 1004, 1007])
        expected = reference(new_ids, attention_mask).pooler_output
        assert max_abs_diff(ours(new_ids, attention_mask).pooler_output, expected) <= TOL
    with pytest.raises(ValueError, match=r"\(vocab_size=1008\), got \[1008\]"):
        ours(torch.cat([new_ids[:, :1], torch.full((3, 1), 1008), new_ids[:, 2:]], 1))


def test_inputs_embeds_are_refused_as_transformers_refuses_them(tmp_path):
    saved_reference(tmp_path)
    reference = transformers.CLIPTextModel.from_pretrained(tmp_path).eval()
    ours = hubformers.CLIPTextModel.from_pretrained(tmp_path).eval()
    input_ids, _ = texts()
    inputs_embeds = ours.get_input_embeddings()(input_ids)
    for inputs in [dict(inputs_embeds=inputs_embeds), dict(input_ids=input_ids, inputs_embeds=inputs_embeds)]:
        with pytest.raises((ValueError, TypeError)):
            reference(**inputs)
        with pytest.raises(ValueError, match="takes `input_ids`, not `inputs_embeds`"):
            ours(**inputs)


@pytest.mark.slow
def test_torch_compile_fullgraph_with_checked_text_inputs():
    """The range checks read the ids; they stay out of the compiled graph, which still matches eager."""
    model = hubformers.CLIPTextModelWithProjection(hubformers.CLIPTextConfig(**TINY_TEXT)).eval()
    input_ids, attention_mask = texts()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        expected = model(input_ids, attention_mask, positions(1, 12)).text_embeds
        assert max_abs_diff(compiled(input_ids, attention_mask, positions(1, 12)).text_embeds, expected) <= 1e-4


@pytest.mark.parametrize(
    "config_class, overrides, message",
    [
        (hubformers.CLIPTextConfig, dict(hidden_size=30), r"`hidden_size` \(30\) must be divisible"),
        (hubformers.CLIPTextConfig, dict(eos_token_id=1000), r"`eos_token_id` must be in \[0, 1000\)"),
        (hubformers.CLIPTextConfig, dict(max_position_embeddings=0), "`max_position_embeddings` must be positive"),
        (hubformers.CLIPVisionConfig, dict(image_size=36), r"`image_size` \(36\) must be divisible by `patch_size`"),
        (hubformers.CLIPVisionConfig, dict(hidden_act="swishy"), "`hidden_act` must be one of"),
        (hubformers.CLIPVisionConfig, dict(attention_dropout=1.0), r"must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_tower_config_values(config_class, overrides, message):
    base = TINY_TEXT if config_class is hubformers.CLIPTextConfig else TINY_VISION
    with pytest.raises(ValueError, match=message):
        config_class(**{**base, **overrides})


def test_bad_joint_config_values():
    with pytest.raises(ValueError, match="`projection_dim` must be positive, got 0"):
        hubformers.CLIPConfig(**{**TINY_CLIP, "projection_dim": 0})
    with pytest.raises(ValueError, match=r"`hidden_size` \(30\) must be divisible"):
        hubformers.CLIPConfig(**{**TINY_CLIP, "text_config": {**TINY_TEXT, "hidden_size": 30}})
