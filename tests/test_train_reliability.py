"""`hubformers train ARCHITECTURE` when things go wrong: a run killed mid-training resumes from its last checkpoint
to the weights of an uninterrupted run, a folder holding something else is not overwritten silently, a crash
while saving the final model leaves the previous folder as it was, and nonsense option values are refused; and the
`hubformers` command's help, version and one-line errors."""

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers
from safetensors.torch import load_file

from hubformers import cli
from hubformers.scripts import train_vit, training

# 64 images in batches of 8: one epoch of 8 optimizer steps, a few seconds on the CPU.
TINY = ["--model-size", "tiny", "--epochs", "1", "--max-train-samples", "64", "--batch-size", "8"]
CHECKPOINT_EVERY_2 = ["--save-strategy", "steps", "--save-steps", "2", "--save-total-limit", "2"]
# Runs the command line in a process that SIGKILLs itself (nothing is flushed or cleaned up, as with the OOM
# killer or a pre-empted job) at the end of one optimizer step: deterministic, unlike killing it from outside.
KILLED_RUN = """
import os, signal, sys
import transformers
from hubformers import cli

class KillAtStep(transformers.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)

trainer_init = transformers.Trainer.__init__

def init_with_kill(self, *args, **kwargs):
    trainer_init(self, *args, **kwargs)
    self.add_callback(KillAtStep)

transformers.Trainer.__init__ = init_with_kill
cli.main(sys.argv[1:])
"""


def train(*argv: str) -> None:
    """`hubformers train ARGV` in this process, its progress output swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(["train", *argv])


def refusal(capsys, *argv: str) -> str:
    """What `hubformers ARGV` printed when it stopped with a usage error (exit status 2) and no traceback."""
    with pytest.raises(SystemExit) as stopped:
        cli.main(list(argv))
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("hubformers"), error
    return error


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A complete tiny ViT run's folder; copy it before changing it."""
    folder = tmp_path_factory.mktemp("finished") / "vit"
    train("vit", "--output-dir", str(folder), *TINY)
    return folder


# --- checkpoints and --resume ----------------------------------------------------------------------------------


class CrashAtStep(transformers.TrainerCallback):
    """Raise at the end of optimizer step 7, after checkpoint-6 (checkpoints every 2 steps)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 7:
            raise RuntimeError("crashed at step 7")


def assert_resumes_to_the_uninterrupted_weights(folder: Path, finished_run: Path, monkeypatch) -> None:
    """`folder` holds what a run with checkpoints every 2 steps left when it stopped at step 7: resuming it runs
    steps 7 and 8 only and ends with the weights of the uninterrupted run."""
    # checkpoints at steps 2, 4 and 6, the newest two kept; weights as safetensors, no pickled weights
    assert sorted(path.name for path in folder.iterdir()) == ["checkpoint-4", "checkpoint-6"]
    for checkpoint in folder.iterdir():
        assert (checkpoint / "model.safetensors").is_file() and not (checkpoint / "pytorch_model.bin").exists()
    weights_at_6 = load_file(folder / "checkpoint-6" / "model.safetensors")

    steps = []
    training_step = transformers.Trainer.training_step
    monkeypatch.setattr(
        transformers.Trainer, "training_step", lambda *a, **k: steps.append(1) or training_step(*a, **k)
    )
    train("vit", "--output-dir", str(folder), *TINY, *CHECKPOINT_EVERY_2, "--resume")
    assert len(steps) == 2  # steps 7 and 8 only: it continued from checkpoint-6 instead of starting over
    assert not training.checkpoints(folder)  # the finished folder holds the model only
    assert_same_weights(folder, finished_run)  # the same seed and data, uninterrupted
    assert any(not torch.equal(load_file(folder / "model.safetensors")[k], v) for k, v in weights_at_6.items())


def test_crashed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, finished_run):
    folder = tmp_path / "vit"
    with monkeypatch.context() as crashing:
        trainer_init = transformers.Trainer.__init__

        def init_with_crash(self, *args, **kwargs):
            trainer_init(self, *args, **kwargs)
            self.add_callback(CrashAtStep)

        crashing.setattr(transformers.Trainer, "__init__", init_with_crash)
        with pytest.raises(RuntimeError, match="crashed at step 7"):
            train("vit", "--output-dir", str(folder), *TINY, *CHECKPOINT_EVERY_2)
    assert_resumes_to_the_uninterrupted_weights(folder, finished_run, monkeypatch)


@pytest.mark.slow  # a process of its own: about 15 s on 2 idle cores, a minute or more on busy ones
def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, finished_run):
    folder = tmp_path / "vit"
    command = [sys.executable, "-c", KILLED_RUN, "train", "vit", "--output-dir", str(folder), *TINY]
    command += CHECKPOINT_EVERY_2
    environment = {**os.environ, "KILL_AT_STEP": "7"}
    killed = subprocess.run(command, check=False, env=environment, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert_resumes_to_the_uninterrupted_weights(folder, finished_run, monkeypatch)


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    error = refusal(capsys, "train", "vit", "--output-dir", str(tmp_path), "--resume")
    assert f"--resume: {tmp_path} holds no checkpoint-STEP folder to resume from" in error
    error = refusal(capsys, "train", "vit", "--output-dir", str(tmp_path / "new"), "--resume", str(tmp_path))
    assert f"--resume: {tmp_path} is not a Trainer checkpoint (no trainer_state.json)" in error


def test_resume_from_a_named_checkpoint(tmp_path):
    checkpoint = tmp_path / "elsewhere" / "checkpoint-6"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    args = SimpleNamespace(output_dir=tmp_path / "new", resume=checkpoint, overwrite_output_dir=False)
    assert training.prepare_output_dir(args) == str(checkpoint)


# --- a folder that holds something else ------------------------------------------------------------------------


def another_model(folder: Path) -> dict[str, bytes]:
    """Fill `folder` with the files of a sharded model from elsewhere; what it holds."""
    folder.mkdir(parents=True)
    for name in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "tokenizer.json"]:
        (folder / name).write_bytes(name.encode())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    (folder / "modeling_other.py").write_text("# another model's code\n")
    return snapshot(folder)


def test_a_folder_holding_another_model_is_refused(tmp_path, capsys):
    before = another_model(tmp_path / "other")
    error = refusal(capsys, "train", "vit", "--output-dir", str(tmp_path / "other"), *TINY)
    assert f"--output-dir {tmp_path / 'other'} is not empty (model-00001-of-00002.safetensors," in error
    assert "pass --overwrite-output-dir to replace it" in error
    assert snapshot(tmp_path / "other") == before


def test_checkpoints_of_an_earlier_run_need_resume_or_overwrite(tmp_path, capsys):
    (tmp_path / "checkpoint-4").mkdir()
    error = refusal(capsys, "train", "vit", "--output-dir", str(tmp_path), *TINY)
    assert "pass --resume to continue its checkpoints, --overwrite-output-dir to replace it" in error


def test_overwrite_output_dir_leaves_only_the_new_model(tmp_path, finished_run):
    folder = tmp_path / "other"
    another_model(folder)
    (folder / "checkpoint-4").mkdir()  # an earlier run's checkpoint must not mix with this run's
    train("vit", "--output-dir", str(folder), *TINY, "--overwrite-output-dir")
    assert snapshot(folder).keys() == snapshot(finished_run).keys()
    assert_same_weights(folder, finished_run)


# --- the final save: all or nothing ----------------------------------------------------------------------------


def test_a_crash_while_saving_leaves_the_previous_folder(tmp_path, monkeypatch, finished_run):
    def crash(*args, **kwargs):
        raise RuntimeError("killed while saving")

    folder = tmp_path / "vit"
    shutil.copytree(finished_run, folder)
    before = snapshot(folder)
    # The weights, config and processor are written by then; the card and metrics are not.
    monkeypatch.setattr(train_vit, "write_model_card", crash)
    with pytest.raises(RuntimeError, match="killed while saving"):
        train("vit", "--output-dir", str(folder), *TINY, "--max-train-samples", "16", "--overwrite-output-dir")
    after = snapshot(folder)
    assert {name: after[name] for name in before} == before
    # beside it only this run's last checkpoint, for --resume; no half-written folder
    assert {Path(name).parts[0] for name in after.keys() - before.keys()} == {"checkpoint-2"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["vit"]


def fake_trainer(output_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(args=SimpleNamespace(output_dir=str(output_dir)), is_world_process_zero=lambda: True)


@pytest.mark.parametrize("atomic", [True, False], ids=["exchange", "two-renames"])
def test_final_folder_replaces_the_output_as_a_whole(tmp_path, monkeypatch, atomic):
    if not atomic:  # where the OS has no atomic exchange of two folders
        monkeypatch.setattr(training, "exchange", lambda first, second: False)
    output = tmp_path / "model"
    (output / "checkpoint-2").mkdir(parents=True)
    (output / "tokenizer.json").write_text("old")
    (tmp_path / ".model.saving").mkdir()  # what a save killed with SIGKILL left
    (tmp_path / ".model.saving" / "half.safetensors").write_text("half")
    with training.final_folder(fake_trainer(output)) as folder:
        (folder / "model.safetensors").write_text("new")
    assert snapshot(output) == {"model.safetensors": b"new"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_exchange_swaps_two_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    if not training.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("no renameat2(RENAME_EXCHANGE) on this OS or file system")
    assert (tmp_path / "b" / "x").read_text() == "a" and not list((tmp_path / "a").iterdir())


# --- option values ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "architecture, flag, value",
    [
        ("vit", "--epochs", "-1"),
        ("vit", "--max-train-samples", "0"),
        ("vit", "--learning-rate", "0"),
        ("swin", "--batch-size", "0"),
        ("swin", "--epochs", "nan"),
        ("swin", "--save-steps", "0"),
        ("clip", "--learning-rate", "-0.001"),
        ("clip", "--max-train-samples", "-5"),
        ("clip", "--seed", "-1"),
        ("vae", "--latent-size", "0"),
        ("vae", "--iw-samples", "0"),
        ("vae", "--beta", "-1"),
        ("vae", "--kl-warmup-epochs", "-2"),
        ("vae", "--hidden-size", "1.5"),
        ("longformer", "--max-length", "0"),
        ("longformer", "--vocab-size", "-4096"),
        ("longformer", "--epochs", "inf"),
        ("longformer", "--save-total-limit", "0"),
    ],
)
def test_nonsense_values_are_refused(capsys, architecture, flag, value):
    with pytest.raises(SystemExit) as stopped:
        cli.build_parser(["train"]).parse_args(["train", architecture, flag, value])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}: expected " in error and f"got {value!r}" in error


def test_sensible_edge_values_are_accepted():
    argv = ["train", "vae", "--epochs", "0.5", "--beta", "0", "--kl-warmup-epochs", "0", "--seed", "0"]
    args = cli.build_parser(argv).parse_args(argv)
    assert (args.epochs, args.beta, args.kl_warmup_epochs, args.seed) == (0.5, 0.0, 0.0, 0)
    assert (args.save_strategy, args.save_steps, args.save_total_limit, args.resume) == ("epoch", 500, 2, None)


# --- the hubformers command ------------------------------------------------------------------------------------


def test_help_names_every_command(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping
    parser = cli.build_parser([])
    (sub_commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--help"])
    assert stopped.value.code == 0
    description = capsys.readouterr().out.splitlines()[2]
    assert {
        "train",
        "convert",
        "benchmark",
        "visualize-attention",
        "zero-shot",
        "generate",
    } < sub_commands.choices.keys()
    for command in sub_commands.choices:
        assert re.search(rf"[ :]{command}[,.]", description), (command, description)


def test_version(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"hubformers {importlib.metadata.version('hubformers')}\n"


def test_a_wrong_model_folder_is_one_line(tmp_path, capsys):
    missing, empty = tmp_path / "no" / "such", tmp_path / "empty"
    empty.mkdir()
    error = refusal(capsys, "zero-shot", "cat.png", "--labels", "a cat,a dog", "--model", str(missing))
    assert error == f"hubformers zero-shot: error: --model {missing}: no such folder, and not a Hub repo id"
    error = refusal(capsys, "visualize-attention", "cat.png", "--model", str(empty), "--out", str(tmp_path))
    assert error.endswith(f"--model {empty}: the folder holds no config.json, so it is not a saved model")
    error = refusal(capsys, "generate", "a three", "--clip", str(empty), "--vae", str(missing), "--out", "x.png")
    assert error.endswith(f"--clip {empty}: the folder holds no config.json, so it is not a saved model")
