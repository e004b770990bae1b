"""Longformer through the Hub and as remote code: a saved folder carries its modules and loads with
`trust_remote_code=True` where hubformers is not installed; push_to_hub and back, against the loopback Hub."""

import uuid

import torch
from test_longformer import TINY_LONGFORMER, inputs
from test_remote_code import run_without_hubformers
from transformers import AutoModelForSequenceClassification

import hubformers


def save_classifier(folder) -> None:
    """A tiny classifier, and an input (with padding and a global token) with the logits it must give."""
    model = hubformers.LongformerForSequenceClassification(hubformers.LongformerConfig(**TINY_LONGFORMER)).eval()
    model.save_pretrained(folder)
    batch_inputs = inputs(2, 13, 3, (0, 4))
    with torch.no_grad():
        logits = model(**batch_inputs).logits
    torch.save({"inputs": batch_inputs, "logits": logits}, folder / "expected.pt")


def test_saved_folder_carries_code_and_auto_map(tmp_path):
    save_classifier(tmp_path)
    for name in ["configuration_longformer.py", "modeling_longformer.py", "checks.py"]:
        assert (tmp_path / name).exists(), name
    auto_map = hubformers.LongformerConfig.from_pretrained(tmp_path).auto_map
    assert auto_map["AutoModelForMaskedLM"] == "modeling_longformer.LongformerForMaskedLM"


def test_hub_round_trip_and_remote_code_without_hubformers(hub, tmp_path):
    """push_to_hub and back with identical weights; then, in one process without hubformers, the pushed
    model and a local folder load as remote code with the same outputs, and save again."""
    repo_id = f"user/longformer-{uuid.uuid4().hex[:8]}"
    save_classifier(tmp_path / "model")
    model = hubformers.LongformerForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    model.push_to_hub(repo_id)
    loaded = AutoModelForSequenceClassification.from_pretrained(repo_id)
    assert isinstance(loaded, hubformers.LongformerForSequenceClassification)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name

    out = run_without_hubformers(
        tmp_path,
        f"""
        from transformers import AutoModelForSequenceClassification
        expected = torch.load("model/expected.pt")
        for source in ["model", "{repo_id}"]:
            model = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            with torch.no_grad():
                diff = (model(**expected["inputs"]).logits - expected["logits"]).abs().max().item()
            assert diff <= 1e-6, (source, diff)
        model.save_pretrained("resaved")
        again = AutoModelForSequenceClassification.from_pretrained("resaved", trust_remote_code=True).eval()
        with torch.no_grad():
            assert torch.equal(again(**expected["inputs"]).logits, model(**expected["inputs"]).logits)
        print(sorted(os.listdir("resaved")))
        print("ok")
        """,
    )
    assert out.strip().endswith("ok") and "modeling_longformer.py" in out
