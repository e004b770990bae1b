"""`import hubformers` registers our model types and nothing more: transformers' own folders keep loading
transformers' classes, and pipelines on our folders never stop to ask about remote code."""

import json
import subprocess
import sys

import pytest
import torch
import transformers
from conftest import TINY_VIT
from PIL import Image

import hubformers

TINY_SWIN = dict(
    image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=3
)


def save_vit(folder):
    hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT)).save_pretrained(folder)
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def save_swin(folder):
    hubformers.SwinForImageClassification(hubformers.SwinConfig(**TINY_SWIN)).save_pretrained(folder)
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


PIPELINE_SCRIPT = """
import sys, time
import numpy as np
from PIL import Image
import hubformers  # noqa: F401
from transformers import pipeline
start = time.perf_counter()
classify = pipeline("image-classification", model=sys.argv[1])
print("LOADED_IN", time.perf_counter() - start)
print(classify(Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)))[0]["label"])
"""


@pytest.mark.parametrize("save", [save_vit, save_swin], ids=["vit", "swin"])
def test_pipeline_on_our_folder_asks_nothing_with_stdin_open(tmp_path, save):
    save(tmp_path)
    # stdin is an open pipe that never answers: transformers' remote-code prompt would wait 15 s on it
    process = subprocess.Popen(
        [sys.executable, "-c", PIPELINE_SCRIPT, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "Do you wish to run the custom code" not in output
    loaded_in = float(output.split("LOADED_IN")[1].split()[0])
    assert loaded_in < 10, f"the pipeline took {loaded_in:.1f} s to load:\n{output}"
    assert "LABEL_" in output


@pytest.mark.parametrize("model_type", ["vit", "swin"])
def test_transformers_folders_keep_transformers_processor(tmp_path, model_type):
    source, resaved = tmp_path / "source", tmp_path / "resaved"
    if model_type == "vit":
        config = transformers.ViTConfig(**TINY_VIT)
    else:
        config = transformers.SwinConfig(**TINY_SWIN)
    config.save_pretrained(source)
    transformers.ViTImageProcessor().save_pretrained(source)

    processor = transformers.AutoImageProcessor.from_pretrained(source)
    assert type(processor) is transformers.ViTImageProcessor
    processor.save_pretrained(resaved)
    assert sorted(path.name for path in resaved.iterdir()) == ["preprocessor_config.json"]
    assert "auto_map" not in json.loads((resaved / "preprocessor_config.json").read_text())


def test_our_processor_is_transformers_and_preprocesses_alike(tmp_path):
    save_vit(tmp_path)
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    image = Image.fromarray((torch.rand(40, 50, 3) * 255).to(torch.uint8).numpy())
    reference = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    assert torch.equal(
        processor(image, return_tensors="pt").pixel_values, reference(image, return_tensors="pt").pixel_values
    )
    assert "auto_map" not in json.loads((tmp_path / "preprocessor_config.json").read_text())
