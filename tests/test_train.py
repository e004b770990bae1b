"""`hubformers train vit`: the Hub-ready folder and its model card, reloading it through the Auto classes with the
reported accuracy, pushing it to the (loopback) Hub, torchrun, and the data loaders."""

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

import hubformers
from hubformers import cli
from hubformers.scripts.data import FASHION_MNIST_DIR, load_digits, load_fashion_mnist, load_image_dataset

QUICK_FLAGS = ["--model-size", "tiny", "--epochs", "1", "--max-train-samples", "256"]
HUB_FILES = {
    "README.md",
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    # The module files that let the folder load with trust_remote_code=True where hubformers is not installed.
    "configuration_vit.py",
    "modeling_vit.py",
    "checks.py",
}


def train(*argv: str) -> str:
    """Run `hubformers train vit ARGV` in this process; what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main(["train", "vit", *argv])
    return printed.getvalue()


def reported_accuracy(folder) -> float:
    return json.loads((folder / "test_results.json").read_text())["test_accuracy"]


def accuracy_of_saved_model(folder_or_repo) -> float:
    """Classify the digits test images as a Hub user would: PIL images through the Auto classes."""
    model = AutoModelForImageClassification.from_pretrained(folder_or_repo).eval()
    processor = AutoImageProcessor.from_pretrained(folder_or_repo)
    digits = load_digits()
    inputs = processor([Image.fromarray(image) for image in digits.test_images], return_tensors="pt")
    with torch.no_grad():
        predictions = model(**inputs).logits.argmax(-1).numpy()
    return float((predictions == digits.test_labels).mean())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, hub):
    """One quick training run, pushed to the loopback Hub: (folder, repo id, what it printed)."""
    folder = tmp_path_factory.mktemp("vit-digits")
    repo_id = "user/vit-digits-quick"
    printed = train("--output-dir", str(folder), *QUICK_FLAGS, "--push-to-hub", repo_id)
    return folder, repo_id, printed


def test_folder_is_hub_ready(quick_run):
    folder, _, printed = quick_run
    assert HUB_FILES <= {path.name for path in folder.iterdir()}
    assert not list(folder.glob("checkpoint-*"))  # per-epoch checkpoints go when the final model is saved
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "hubformers_vit"
    assert config["id2label"] == {str(i): str(i) for i in range(10)}
    assert config["label2id"] == {str(i): i for i in range(10)}
    processor_config = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor_config["size"] == {"height": 32, "width": 32} and processor_config["do_convert_rgb"]
    assert f"test accuracy: {reported_accuracy(folder):.4f} on 360 digits test images" in printed


def test_model_card_parses_and_reports_the_run(quick_run):
    folder, repo_id, _ = quick_run
    card = ModelCard.load(folder / "README.md")
    accuracy = reported_accuracy(folder)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "image-classification"
    assert {"hubformers", "vit", "image-classification"} <= set(card.data.tags)
    assert card.data.datasets == ["sklearn-docs/digits"]
    assert card.data.metrics == ["accuracy"]
    (result,) = card.data.eval_results
    assert result.metric_type == "accuracy" and result.metric_value == round(accuracy, 4)
    assert result.dataset_type == "sklearn-docs/digits" and result.dataset_split == "test"
    parameters = AutoModelForImageClassification.from_pretrained(folder).num_parameters()
    for expected in [
        f"**{accuracy:.2%} accuracy**",
        "| Epochs | 1 |",
        "| Batch size | 64 |",
        "peak learning rate 0.001",
        "`tiny` preset",
        f"| Parameters | {parameters:,} |",
        "The model trained on 256 images",
        "| Hardware | CPU" if not torch.cuda.is_available() else "| Hardware | NVIDIA",
        "import hubformers",
        f'AutoModelForImageClassification.from_pretrained("{repo_id}")',
        f'AutoModelForImageClassification.from_pretrained("{repo_id}", trust_remote_code=True)',
    ]:
        assert expected in card.text, expected


def test_saved_model_reproduces_the_reported_accuracy(quick_run):
    folder, _, _ = quick_run
    model = AutoModelForImageClassification.from_pretrained(folder)
    assert isinstance(model, hubformers.ViTForImageClassification)
    assert abs(accuracy_of_saved_model(folder) - reported_accuracy(folder)) < 1e-6


def test_pushed_repo_matches_the_folder(quick_run):
    folder, repo_id, printed = quick_run
    assert f"pushed to {HfApi().endpoint}" in printed
    assert HUB_FILES <= set(HfApi().list_repo_files(repo_id))
    assert abs(accuracy_of_saved_model(repo_id) - reported_accuracy(folder)) < 1e-6


def test_same_seed_same_model(quick_run, tmp_path):
    folder, _, _ = quick_run
    train("--output-dir", str(tmp_path), *QUICK_FLAGS)
    assert (tmp_path / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


# --- data ------------------------------------------------------------------------------------------------------


def test_digits_split_is_fixed_and_stratified():
    first, second = load_digits(), load_digits()
    assert first.train_images.shape == (1437, 8, 8) and first.test_images.shape == (360, 8, 8)
    assert first.train_images.dtype == np.uint8 and first.train_images.max() == 255
    np.testing.assert_array_equal(first.test_images, second.test_images)
    np.testing.assert_array_equal(first.test_labels, second.test_labels)
    assert set(np.bincount(first.test_labels)) <= {35, 36, 37}  # every digit ~20% of its ~180 images
    assert first.class_names == [str(i) for i in range(10)]


def test_fashion_mnist_loader():
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed (Debian package dataset-fashion-mnist, in {FASHION_MNIST_DIR})")
    data = load_image_dataset("fashion-mnist")
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert data.train_images.dtype == np.uint8 and data.train_images.max() == 255
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(root=tmp_path)


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"Unknown data set 'mnist'.*'digits', 'fashion-mnist'"):
        load_image_dataset("mnist")


# --- slow: the README's default run, and torchrun --------------------------------------------------------------


@pytest.mark.slow
def test_default_run_reaches_90_percent(tmp_path):
    train("--output-dir", str(tmp_path))
    assert reported_accuracy(tmp_path) >= 0.90
    assert abs(accuracy_of_saved_model(tmp_path) - reported_accuracy(tmp_path)) < 1e-6


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "hubformers.cli", "train", "vit", "--output-dir", str(tmp_path), *QUICK_FLAGS]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("test accuracy:") == 1  # rank 0 reports, rank 1 stays quiet
    assert HUB_FILES <= {path.name for path in tmp_path.iterdir()}
    card = ModelCard.load(tmp_path / "README.md")
    assert "| Batch size | 128 |" in card.text and "2 processes (torchrun)" in card.text
    assert abs(accuracy_of_saved_model(tmp_path) - reported_accuracy(tmp_path)) < 1e-6


@pytest.mark.slow
def test_fashion_mnist_run(tmp_path):
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed (Debian package dataset-fashion-mnist, in {FASHION_MNIST_DIR})")
    printed = train("--output-dir", str(tmp_path), "--dataset", "fashion-mnist", *QUICK_FLAGS)
    assert "on 10,000 fashion-mnist test images" in printed
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["id2label"]["9"] == "Ankle boot"
    assert ModelCard.load(tmp_path / "README.md").data.datasets == ["zalando-datasets/fashion_mnist"]
