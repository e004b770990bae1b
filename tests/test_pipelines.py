"""transformers' pipelines on our folders, loaded by path, on real text and photos: Longformer's fill-mask,
text-classification, token-classification and feature-extraction, Swin's classifier and features, CLIP's vision
tower with its projection; each result is checked against the model's own outputs. (transformers 5 removed the
question-answering pipeline; `LongformerForQuestionAnswering` is tested directly against transformers'.)"""

import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from transformers import pipeline

import hubformers
from hubformers.scripts.text_data import load_python_docs, train_tokenizer

TEXT = "The with statement wraps a block of code: the context manager's exit method runs when the block ends."


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(load_python_docs().train_documents[:20], vocab_size=600)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(load_sample_images().images[0])  # scikit-learn's china.jpg


def save_longformer(folder, head: type, tokenizer, **config_overrides):
    config = hubformers.LongformerConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        attention_window=[4, 4],
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **config_overrides,
    )
    model = head(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@torch.no_grad()
def test_fill_mask(tmp_path, tokenizer):
    model = save_longformer(tmp_path, hubformers.LongformerForMaskedLM, tokenizer)
    text = TEXT.replace(" block", f" {tokenizer.mask_token}", 1)
    predictions = pipeline("fill-mask", model=str(tmp_path), top_k=3)(text)
    inputs = tokenizer(text, return_tensors="pt")
    position = (inputs.input_ids[0] == tokenizer.mask_token_id).nonzero().item()
    probabilities = model(**inputs).logits[0, position].softmax(-1)
    top = probabilities.topk(3)
    assert [p["token"] for p in predictions] == top.indices.tolist()
    assert [p["score"] for p in predictions] == pytest.approx(top.values.tolist(), abs=1e-6)


@torch.no_grad()
def test_text_classification(tmp_path, tokenizer):
    model = save_longformer(tmp_path, hubformers.LongformerForSequenceClassification, tokenizer, num_labels=3)
    (result,) = pipeline("text-classification", model=str(tmp_path), top_k=None)([TEXT])
    probabilities = model(**tokenizer(TEXT, return_tensors="pt")).logits[0].softmax(-1)
    scores = {entry["label"]: entry["score"] for entry in result}
    assert scores == pytest.approx({f"LABEL_{i}": p for i, p in enumerate(probabilities.tolist())}, abs=1e-6)


@torch.no_grad()
def test_token_classification(tmp_path, tokenizer):
    model = save_longformer(tmp_path, hubformers.LongformerForTokenClassification, tokenizer, num_labels=3)
    entities = pipeline("token-classification", model=str(tmp_path))(TEXT)
    inputs = tokenizer(TEXT, return_tensors="pt")
    probabilities = model(**inputs).logits[0].softmax(-1)
    # every token but <s> and </s>, with its most likely label and that label's probability
    expected = [(i, p.argmax().item(), p.max().item()) for i, p in enumerate(probabilities)][1:-1]
    got = [(e["index"], int(e["entity"].split("_")[1]), e["score"]) for e in entities]
    assert [(i, label) for i, label, _ in got] == [(i, label) for i, label, _ in expected]
    assert [score for *_, score in got] == pytest.approx([score for *_, score in expected], abs=1e-6)


@torch.no_grad()
def test_feature_extraction(tmp_path, tokenizer):
    model = save_longformer(tmp_path, hubformers.LongformerModel, tokenizer)
    features = torch.tensor(pipeline("feature-extraction", model=str(tmp_path))(TEXT))
    expected = model(**tokenizer(TEXT, return_tensors="pt")).last_hidden_state
    assert features.shape == expected.shape
    assert (features - expected).abs().max().item() <= 1e-5


def save_swin(folder, head: type):
    config = hubformers.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=3
    )
    model = head(config).eval()
    model.save_pretrained(folder)
    processor = hubformers.ViTImageProcessor(size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    return model, processor


@torch.no_grad()
def test_swin_image_classification(tmp_path, photo):
    model, processor = save_swin(tmp_path, hubformers.SwinForImageClassification)
    result = pipeline("image-classification", model=str(tmp_path), top_k=3)(photo)
    probabilities = model(**processor(photo, return_tensors="pt")).logits[0].softmax(-1)
    scores = {entry["label"]: entry["score"] for entry in result}
    assert scores == pytest.approx({f"LABEL_{i}": p for i, p in enumerate(probabilities.tolist())}, abs=1e-6)


@torch.no_grad()
def test_swin_image_feature_extraction(tmp_path, photo):
    model, processor = save_swin(tmp_path, hubformers.SwinModel)
    features = torch.tensor(pipeline("image-feature-extraction", model=str(tmp_path))(photo))
    expected = model(**processor(photo, return_tensors="pt")).last_hidden_state
    assert (features - expected).abs().max().item() <= 1e-5
    pooled = torch.tensor(pipeline("image-feature-extraction", model=str(tmp_path), pool=True)(photo))
    assert (pooled - model(**processor(photo, return_tensors="pt")).pooler_output).abs().max().item() <= 1e-5


@torch.no_grad()
def test_clip_vision_tower_image_feature_extraction(tmp_path, photo):
    config = hubformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    model = hubformers.CLIPVisionModelWithProjection(config).eval()
    model.save_pretrained(tmp_path)
    processor = hubformers.clip_image_processor(32)
    processor.save_pretrained(tmp_path)
    features = torch.tensor(pipeline("image-feature-extraction", model=str(tmp_path))(photo))
    expected = model(**processor(photo, return_tensors="pt")).last_hidden_state
    assert (features - expected).abs().max().item() <= 1e-5
