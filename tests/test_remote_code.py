"""Hub remote code: a folder we saved loads with `trust_remote_code=True` in a Python process where
`import hubformers` fails, and keeps working where custom code is known to break: saving such a model
again, and `Trainer` resuming from a checkpoint of it."""

import ast
import os
import subprocess
import sys
import textwrap

import torch
from conftest import TINY_VIT

import hubformers

# Runs in a child process whose PYTHONPATH shadows hubformers with a package that cannot be imported.
CHILD_PRELUDE = """
import os, sys, torch
try:
    import hubformers
    sys.exit("hubformers must not be importable in this process")
except ImportError:
    pass
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification
"""


def run_without_hubformers(tmp_path, body: str) -> str:
    blocker = tmp_path / "blocker" / "hubformers"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text('raise ImportError("hubformers is not installed here")\n')
    env = dict(os.environ, PYTHONPATH=str(blocker.parent))
    script = CHILD_PRELUDE + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def save_classifier(folder) -> tuple[torch.Tensor, torch.Tensor]:
    """Save a tiny classifier with its processor; return an input and the logits it must give."""
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT)).eval()
    model.save_pretrained(folder)
    hubformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(pixel_values).logits
    torch.save({"pixel_values": pixel_values, "logits": logits}, folder / "expected.pt")
    return pixel_values, logits


def test_saved_folder_code_is_plain_python(tmp_path):
    """The remote code of a saved ViT is the model, its config and their shared modules, at most 900 lines: none
    of the fast paths (no C source, no compiler call, no ctypes), which plug in only where hubformers is installed."""
    save_classifier(tmp_path)
    files = {path.name: path.read_text() for path in tmp_path.glob("*.py")}
    assert set(files) == {
        "checks.py",
        "configuration_utils.py",
        "configuration_vit.py",
        "modeling_common.py",
        "modeling_vit.py",
    }
    line_counts = {name: len(source.splitlines()) for name, source in files.items()}
    assert sum(line_counts.values()) <= 900, line_counts
    for name, source in files.items():
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(("." * node.level) + (node.module or "").split(".")[0])
        assert imported <= {
            "collections",
            "dataclasses",
            "functools",
            "math",
            "typing",
            "torch",
            "transformers",
            "huggingface_hub",
            ".checks",
            ".configuration_utils",
            ".configuration_vit",
            ".modeling_common",
        }, (name, imported)
        assert "#include" not in source and "-march" not in source, name


def test_saved_folder_carries_code_and_auto_map(tmp_path):
    save_classifier(tmp_path)
    for name in ["configuration_vit.py", "modeling_vit.py", "checks.py"]:
        assert (tmp_path / name).exists(), name
    # the processor is transformers' own ViTImageProcessor: no module file, no auto_map
    assert not (tmp_path / "image_processing_vit.py").exists()
    config = hubformers.ViTConfig.from_pretrained(tmp_path)
    assert config.auto_map["AutoModel"] == "modeling_vit.ViTModel"
    assert config.auto_map["AutoModelForImageClassification"] == "modeling_vit.ViTForImageClassification"


def test_loads_and_saves_again_without_hubformers(tmp_path):
    save_classifier(tmp_path / "model")
    out = run_without_hubformers(
        tmp_path,
        """
        expected = torch.load("model/expected.pt")
        model = AutoModelForImageClassification.from_pretrained("model", trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            diff = (model(expected["pixel_values"]).logits - expected["logits"]).abs().max().item()
        assert diff <= 1e-6, diff
        base = AutoModel.from_pretrained("model", trust_remote_code=True)
        assert type(base).__name__ == "ViTModel"
        processor = AutoImageProcessor.from_pretrained("model", trust_remote_code=True)
        assert processor.size["height"] == 32 and type(processor).__module__.startswith("transformers.models.vit")

        # the known break: a remote-code model saved again must still carry its module files
        model.save_pretrained("resaved")
        print(sorted(os.listdir("resaved")))
        again = AutoModelForImageClassification.from_pretrained("resaved", trust_remote_code=True).eval()
        with torch.no_grad():
            assert torch.equal(again(expected["pixel_values"]).logits, model(expected["pixel_values"]).logits)
        print("ok")
        """,
    )
    assert out.strip().endswith("ok")
    assert "modeling_vit.py" in out and "checks.py" in out and "configuration_vit.py" in out


def test_trainer_resumes_from_checkpoint_without_hubformers(tmp_path):
    save_classifier(tmp_path / "model")
    out = run_without_hubformers(
        tmp_path,
        """
        from transformers import Trainer, TrainingArguments

        class Digits(torch.utils.data.Dataset):
            def __init__(self):
                g = torch.Generator().manual_seed(0)
                self.x, self.y = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 3, (16,), generator=g)
            def __len__(self):
                return len(self.y)
            def __getitem__(self, i):
                return {"pixel_values": self.x[i], "labels": self.y[i]}

        def trainer(max_steps, output_dir):
            model = AutoModelForImageClassification.from_pretrained("model", trust_remote_code=True)
            args = TrainingArguments(
                output_dir, max_steps=max_steps, save_steps=2, per_device_train_batch_size=4,
                lr_scheduler_type="constant", report_to="none", disable_tqdm=True, use_cpu=True, seed=0,
            )
            return Trainer(model=model, args=args, train_dataset=Digits())

        uninterrupted = trainer(4, "straight")
        uninterrupted.train()
        trainer(2, "run").train()
        print(sorted(os.listdir("run/checkpoint-2")))
        resumed = trainer(4, "run")
        resumed.train(resume_from_checkpoint=True)
        # resuming restored weights, optimizer and data order: the same model as four steps in one go
        probe = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            a, b = uninterrupted.model.eval()(probe).logits, resumed.model.eval()(probe).logits
        assert (a - b).abs().max().item() <= 1e-5, (a - b).abs().max().item()
        print("resumed")
        """,
    )
    assert "modeling_vit.py" in out and "resumed" in out
