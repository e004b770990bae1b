"""CLIP's text and image handling: the tokenizer built from open_clip's BPE file gives open_clip's ids, the
image processor transformers' CLIP numbers, the processor truncates to the position table and loads through
AutoProcessor; zero-shot classification through `pipeline`; `Trainer` with default arguments trains on a
`datasets.Dataset` of images and captions through the documented collator."""

import datasets
import numpy as np
import pytest
import torch
import transformers
from conftest import max_abs_diff
from PIL import Image
from test_clip import TINY_TEXT, TINY_VISION
from transformers import AutoProcessor, AutoTokenizer, Trainer, TrainingArguments

import hubformers
from hubformers.scripts.build_clip_tokenizer import build_clip_tokenizer

SENTENCES = [
    "a photo of a cat",
    "A Photo OF   the DIGIT seven!!",
    "it's 3:45pm, don't you think? We'll see; they've gone.",
    "naïve café — déjà vu, Straße, ÉCOLE",
    "emoji 😀🐈 and 中文 text and العربية",
    "hello\tworld\nnew line   trailing   ",
    'C++ & python\'s "quotes" (brackets) [x] {y} <z> 100% $5 #tag @user',
    "numbers 1234567890 and 3.14159 and 1,000,000",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "",
    " ".join(["a long caption that goes on"] * 30),  # longer than 77 tokens: truncated, end-of-text kept
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_clip_tokenizer()


def clip_vocab_config() -> dict:
    return {**TINY_TEXT, "vocab_size": 49408, "bos_token_id": 49406, "eos_token_id": 49407}


@pytest.fixture(scope="module")
def processor(tokenizer):
    tokenizer = build_clip_tokenizer(model_max_length=TINY_TEXT["max_position_embeddings"])
    return hubformers.CLIPImageTextProcessor(hubformers.clip_image_processor(TINY_VISION["image_size"]), tokenizer)


def test_token_ids_equal_open_clip(tokenizer):
    import open_clip

    expected = open_clip.get_tokenizer("ViT-B-32")(SENTENCES)  # (sentences, 77), padded with 0
    got = tokenizer(SENTENCES, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    assert len(tokenizer) == 49408
    # open_clip pads with 0, transformers with the end-of-text token, which the attention mask marks
    assert torch.equal(got.input_ids * got.attention_mask, expected)
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_saved_tokenizer_loads_through_auto_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, transformers.CLIPTokenizer)
    assert loaded(SENTENCES[:4]).input_ids == tokenizer(SENTENCES[:4]).input_ids
    assert loaded.model_max_length == 77


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_image_processor_matches_transformers_clip(backend):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    reference_class = (
        transformers.CLIPImageProcessor if backend == "torchvision" else transformers.CLIPImageProcessorPil
    )
    expected = reference_class()(image, return_tensors="pt").pixel_values
    got = hubformers.clip_image_processor(backend=backend)(image, return_tensors="pt").pixel_values
    assert got.shape == (1, 3, 224, 224)
    assert max_abs_diff(expected, got) <= 1e-5


def test_processor_truncates_to_the_position_table(processor):
    inputs = processor(text=SENTENCES[-1:], images=[Image.new("RGB", (40, 30), "red")], return_tensors="pt")
    assert inputs.input_ids.shape == (1, TINY_TEXT["max_position_embeddings"])
    assert inputs.input_ids[0, -1].item() == 49407
    assert inputs.pixel_values.shape == (1, 3, 32, 32)
    model = hubformers.CLIPModel(hubformers.CLIPConfig(text_config=clip_vocab_config(), vision_config=TINY_VISION))
    assert model(**inputs).logits_per_image.shape == (1, 1)
    untruncated = processor(text=SENTENCES[-1:], truncation=False, return_tensors="pt")
    with pytest.raises(ValueError, match="more than the 16 positions"):
        model.get_text_features(**untruncated)


def test_processor_round_trip_through_auto_processor(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    hubformers.CLIPModel(
        hubformers.CLIPConfig(text_config=clip_vocab_config(), vision_config=TINY_VISION)
    ).save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, hubformers.CLIPImageTextProcessor)
    assert isinstance(loaded.image_processor, (hubformers.ViTImageProcessor, hubformers.ViTImageProcessorPil))
    assert isinstance(AutoTokenizer.from_pretrained(tmp_path), transformers.CLIPTokenizer)
    image = Image.new("RGB", (50, 40), "blue")
    a = loaded(text=SENTENCES[:3], images=[image], padding=True, return_tensors="pt")
    b = processor(text=SENTENCES[:3], images=[image], padding=True, return_tensors="pt")
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.pixel_values, b.pixel_values)


def test_zero_shot_pipeline_with_our_model(processor, tmp_path):
    config = hubformers.CLIPConfig(text_config=clip_vocab_config(), vision_config=TINY_VISION)
    hubformers.CLIPModel(config).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    classify = transformers.pipeline("zero-shot-image-classification", model=str(tmp_path))
    labels = ["a photo of a cat", "a photo of a dog", "a red square"]
    predictions = classify(Image.new("RGB", (50, 40), "red"), candidate_labels=labels, hypothesis_template="{}")
    assert sorted(p["label"] for p in predictions) == sorted(labels)
    assert abs(sum(p["score"] for p in predictions) - 1.0) < 1e-4
    # the scores are the model's own softmax over the labels
    inputs = processor(text=labels, images=[Image.new("RGB", (50, 40), "red")], padding=True, return_tensors="pt")
    with torch.no_grad():
        probabilities = classify.model(**inputs).logits_per_image.softmax(-1)[0]
    for prediction in predictions:
        assert abs(prediction["score"] - probabilities[labels.index(prediction["label"])].item()) < 1e-5


COLORS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 220, 40),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
    "purple": (130, 30, 160),
    "orange": (250, 140, 20),
}


def color_pairs(n: int) -> datasets.Dataset:
    """Solid-colour images (with noise) captioned with their colour's name."""
    names = [list(COLORS)[i % len(COLORS)] for i in range(n)]
    rng = np.random.default_rng(0)
    pictures = [
        Image.fromarray(np.clip(np.array(COLORS[name]) + rng.integers(-25, 25, (32, 32, 3)), 0, 255).astype(np.uint8))
        for name in names
    ]
    return datasets.Dataset.from_dict({"image": pictures, "caption": [f"a {name} picture" for name in names]})


@pytest.fixture
def one_thread():
    """A tiny model's small matmuls run many times faster on one thread than on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_trainer_with_default_arguments_trains_on_images_and_captions(processor, tmp_path, one_thread):
    pairs = color_pairs(48)
    train = pairs.map(hubformers.preprocess_pairs(processor), batched=True, remove_columns=pairs.column_names)
    assert set(train.column_names) == {"pixel_values", "input_ids"}  # named like CLIPModel.forward's arguments
    config = hubformers.CLIPConfig(text_config=clip_vocab_config(), vision_config=TINY_VISION, projection_dim=24)
    model = hubformers.CLIPModel(config)
    args = TrainingArguments(
        str(tmp_path),
        num_train_epochs=10,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        report_to="none",
        disable_tqdm=True,
        logging_steps=3,
        use_cpu=True,
    )  # remove_unused_columns stays True (the default)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=hubformers.CLIPCollator(processor))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    # from ln 16 = 2.77 (chance) towards ln 2 = 0.69 (each of the 8 captions is in a batch of 16 about twice)
    assert losses[-1] < losses[0] - 0.7, losses
