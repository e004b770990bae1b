"""Sharing through the Hub, against the loopback server: push_to_hub and back with identical weights,
Trainer(push_to_hub=True), and the remote-code load of a pushed model where hubformers is not installed."""

import uuid

import torch
from conftest import TINY_VIT
from test_remote_code import run_without_hubformers
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, Trainer, TrainingArguments

import hubformers


def new_repo_id() -> str:
    return f"user/vit-{uuid.uuid4().hex[:8]}"


def test_push_to_hub_and_load_back(hub):
    repo_id = new_repo_id()
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT))
    model.push_to_hub(repo_id)
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).push_to_hub(repo_id)

    loaded = AutoModelForImageClassification.from_pretrained(repo_id)
    assert isinstance(loaded, hubformers.ViTForImageClassification)
    expected = model.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert isinstance(AutoModel.from_pretrained(repo_id), hubformers.ViTModel)
    assert AutoImageProcessor.from_pretrained(repo_id).size == {"height": 32, "width": 32}


class RandomImages(torch.utils.data.Dataset):
    def __init__(self, n: int = 8):
        self.pixel_values, self.labels = torch.randn(n, 3, 32, 32), torch.randint(0, 3, (n,))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixel_values[i], "labels": self.labels[i]}


def test_trainer_push_to_hub(hub, tmp_path):
    repo_id = new_repo_id()
    args = TrainingArguments(
        str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=4,
        push_to_hub=True,
        hub_model_id=repo_id,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT))
    trainer = Trainer(model=model, args=args, train_dataset=RandomImages())
    trainer.train()
    trainer.push_to_hub()
    pulled = AutoModelForImageClassification.from_pretrained(repo_id)
    for name, tensor in pulled.state_dict().items():
        assert torch.equal(tensor, trainer.model.state_dict()[name]), name


def test_remote_code_load_from_the_hub(hub, tmp_path):
    repo_id = new_repo_id()
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT)).eval()
    model.push_to_hub(repo_id)
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.save({"pixel_values": pixel_values, "logits": model(pixel_values).logits}, tmp_path / "expected.pt")
    out = run_without_hubformers(
        tmp_path,
        f"""
        expected = torch.load("expected.pt")
        model = AutoModelForImageClassification.from_pretrained("{repo_id}", trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            print("diff", (model(expected["pixel_values"]).logits - expected["logits"]).abs().max().item())
        """,
    )
    assert float(out.split("diff")[-1]) <= 1e-6
