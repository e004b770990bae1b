"""`hubformers train clip` and `hubformers zero-shot`: the Hub-ready folder and its model card, the reported
zero-shot accuracy reproduced from the saved folder through the Auto classes, ranked labels on the command
line; and (slow) the full run's >= 80% zero-shot accuracy on held-out digits."""

import contextlib
import io
import json

import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

import hubformers
from hubformers import cli
from hubformers.scripts.data import load_digits
from hubformers.scripts.train_clip import NUMBER_WORDS, zero_shot_accuracy

QUICK_FLAGS = ["--model-size", "tiny", "--epochs", "2", "--max-train-samples", "256"]
HUB_FILES = {
    "README.md",
    "config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "configuration_clip.py",
    "modeling_clip.py",
    "processing_clip.py",
    "configuration_utils.py",
    "modeling_common.py",
    "image_processing_vit.py",
    "checks.py",
}


def run(*argv: str) -> str:
    """`hubformers ARGV` in this process; what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main(list(argv))
    return printed.getvalue()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick training run on one thread (a tiny model's matmuls are faster so on two busy cores)."""
    folder = tmp_path_factory.mktemp("clip-digits")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        printed = run("train", "clip", "--output-dir", str(folder), *QUICK_FLAGS)
    finally:
        torch.set_num_threads(threads)
    return folder, printed


def test_folder_is_hub_ready_and_reproduces_the_reported_accuracy(quick_run):
    folder, printed = quick_run
    assert HUB_FILES <= {path.name for path in folder.iterdir()}
    assert json.loads((folder / "config.json").read_text())["model_type"] == "hubformers_clip"
    reported = json.loads((folder / "test_results.json").read_text())["test_zero_shot_accuracy"]
    assert f"zero-shot accuracy: {reported:.4f} on 360 held-out digits" in printed
    card = (folder / "README.md").read_text()
    assert f"**{reported:.2%} accuracy**" in card and "pipeline_tag: zero-shot-image-classification" in card

    model, processor = AutoModel.from_pretrained(folder), AutoProcessor.from_pretrained(folder)
    assert isinstance(model, hubformers.CLIPModel) and isinstance(processor, hubformers.CLIPImageTextProcessor)
    digits = load_digits()
    accuracy, _ = zero_shot_accuracy(model, processor, digits.test_images, digits.test_labels)
    assert accuracy == reported


def test_zero_shot_command_ranks_the_labels(quick_run, tmp_path):
    folder, _ = quick_run
    digits = load_digits()
    Image.fromarray(digits.test_images[0]).save(tmp_path / "digit.png")
    labels = [f"a photo of the digit {word}" for word in NUMBER_WORDS]
    printed = run("zero-shot", str(tmp_path / "digit.png"), "--labels", ",".join(labels), "--model", str(folder))
    lines = [line.split(maxsplit=1) for line in printed.strip().splitlines()]
    scores = [float(score) for score, _ in lines]
    assert sorted(label for _, label in lines) == sorted(labels)
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-3


def test_zero_shot_command_needs_two_labels(quick_run, tmp_path):
    with pytest.raises(ValueError, match="at least two comma-separated labels"):
        run("zero-shot", "digit.png", "--labels", "a cat", "--model", str(quick_run[0]))


@pytest.mark.slow
def test_default_run_classifies_held_out_digits_zero_shot(tmp_path):
    """The bar: >= 80% zero-shot accuracy on held-out digits from text prompts alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        printed = run("train", "clip", "--output-dir", str(tmp_path))
    finally:
        torch.set_num_threads(threads)
    accuracy = json.loads((tmp_path / "test_results.json").read_text())["test_zero_shot_accuracy"]
    assert accuracy >= 0.8, printed
