"""Round trips through the loopback Hub in hub_server.py with the real huggingface_hub and transformers clients."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

# conftest.py pointed HF_ENDPOINT at the loopback hub before huggingface_hub was imported; `hub` starts it.


@pytest.fixture
def repo_id(hub):
    return f"user/test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def api(hub):
    return HfApi()


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# hello\n")
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 4)  # every byte value: survives base64 and HTTP
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "sub" / "deep" / "config.json").write_text('{"a": 1}')
    return tmp_path


def test_endpoint_points_at_loopback(hub):
    from huggingface_hub import constants

    assert constants.ENDPOINT == hub.url
    assert os.path.basename(constants.HF_HOME).startswith("hf-home-")  # a throwaway cache, never the user's
    assert constants.HF_HUB_CACHE.startswith(constants.HF_HOME)
    assert HfApi().whoami()["name"] == "user"


def test_create_repo_twice(api, repo_id):
    url = api.create_repo(repo_id)
    assert url.repo_id == repo_id and url.startswith(api.endpoint)
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo_id)
    assert err.value.response.status_code == 409
    assert api.create_repo("no-namespace", exist_ok=True).repo_id == "user/no-namespace"  # like the Hub: your namespace


def test_upload_folder_and_download(api, repo_id, folder):
    api.create_repo(repo_id)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="add files")
    assert len(info.oid) == 40 and info.commit_url.endswith(info.oid)

    assert api.list_repo_files(repo_id) == [".gitattributes", "README.md", "sub/deep/config.json", "weights.bin"]
    assert api.model_info(repo_id).sha == info.oid
    path = hf_hub_download(repo_id, "weights.bin")
    assert Path(path).read_bytes() == (folder / "weights.bin").read_bytes()
    assert Path(hf_hub_download(repo_id, "config.json", subfolder="sub/deep")).read_text() == '{"a": 1}'

    snapshot = snapshot_download(repo_id)
    for name in ("README.md", "weights.bin", "sub/deep/config.json"):
        assert (folder / name).read_bytes() == Path(f"{snapshot}/{name}").read_bytes()
    assert snapshot.endswith(info.oid)


def test_second_commit_keeps_old_revision(api, repo_id, folder):
    api.create_repo(repo_id)
    first = api.upload_folder(repo_id=repo_id, folder_path=folder).oid
    (folder / "weights.bin").write_bytes(b"new weights")
    second = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="change weights").oid
    assert first != second and len(second) == 40

    assert Path(hf_hub_download(repo_id, "weights.bin")).read_bytes() == b"new weights"
    assert Path(hf_hub_download(repo_id, "weights.bin", revision=second)).read_bytes() == b"new weights"
    assert Path(hf_hub_download(repo_id, "weights.bin", revision=first)).read_bytes() == bytes(range(256)) * 4
    assert Path(hf_hub_download(repo_id, "weights.bin", revision=first[:7])).read_bytes() == bytes(range(256)) * 4
    assert [c.commit_id for c in api.list_repo_commits(repo_id)][:2] == [second, first]


def test_create_commit_with_parent_commit_and_delete(api, repo_id, folder):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api.create_repo(repo_id)
    head = api.upload_folder(repo_id=repo_id, folder_path=folder).oid
    ops = [CommitOperationAdd("extra.txt", b"x"), CommitOperationDelete("sub/", is_folder=True)]
    api.create_commit(repo_id, ops, commit_message="edit", parent_commit=head)
    assert api.list_repo_files(repo_id) == [".gitattributes", "README.md", "extra.txt", "weights.bin"]
    with pytest.raises(HfHubHTTPError) as err:  # head moved on: the Hub refuses a stale parent
        api.create_commit(repo_id, [CommitOperationAdd("late.txt", b"y")], commit_message="late", parent_commit=head)
    assert err.value.response.status_code == 412


def test_branches_and_pull_requests(api, repo_id, folder):
    api.create_repo(repo_id)
    api.create_branch(repo_id, branch="dev")
    api.create_branch(repo_id, branch="dev", exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=folder, revision="dev")
    assert "weights.bin" in api.list_repo_files(repo_id, revision="dev")
    assert "weights.bin" not in api.list_repo_files(repo_id)
    pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="pr.txt", repo_id=repo_id, create_pr=True)
    assert pr.pr_revision == "refs/pr/1"
    assert Path(hf_hub_download(repo_id, "pr.txt", revision=pr.pr_revision)).read_bytes() == b"pr"
    refs = api.list_repo_refs(repo_id, include_pull_requests=True)
    assert {b.name for b in refs.branches} == {"main", "dev"} and len(refs.pull_requests) == 1


def test_missing_things_raise_hub_errors(api, repo_id):
    api.create_repo(repo_id)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "nope.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, ".gitattributes", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/does-not-exist", "config.json")
    assert not api.file_exists(repo_id, "nope.txt") and not api.repo_exists("user/does-not-exist")


def test_subprocess_shares_the_hub(api, repo_id):
    # Child processes (e.g. a CLI under test) inherit HF_ENDPOINT and the cache variables, so they reach this hub.
    code = (
        "from huggingface_hub import HfApi\n"
        f"HfApi().upload_file(path_or_fileobj=b'hi', path_in_repo='x.txt', repo_id={repo_id!r})"
    )
    api.create_repo(repo_id)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert Path(hf_hub_download(repo_id, "x.txt")).read_bytes() == b"hi"


def test_transformers_push_to_hub_and_from_pretrained(hub, repo_id):
    import torch
    import transformers

    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    model = transformers.ViTModel(config).eval()
    model.push_to_hub(repo_id)

    loaded = transformers.ViTModel.from_pretrained(repo_id).eval()
    assert loaded.config.hidden_size == 32 and loaded.config.num_hidden_layers == 2
    expected, actual = model.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=0, msg=name)
    assert "README.md" in HfApi().list_repo_files(repo_id)  # push_to_hub writes a model card


@pytest.mark.slow  # trains a step and pushes twice (checkpoint + final): a few seconds beyond the imports
def test_trainer_push_to_hub(hub, tmp_path):
    import torch
    import transformers

    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        num_labels=3,
    )
    model = transformers.ViTForImageClassification(config)
    data = [{"pixel_values": torch.randn(3, 32, 32), "labels": i % 3} for i in range(4)]
    name = f"trainer-{uuid.uuid4().hex[:8]}"  # no namespace, as Trainer names the repo after output_dir
    args = transformers.TrainingArguments(
        str(tmp_path / name),
        per_device_train_batch_size=4,
        max_steps=1,
        save_steps=1,
        report_to=[],
        use_cpu=True,
        push_to_hub=True,
        hub_strategy="checkpoint",
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    trainer.push_to_hub()
    assert trainer.hub_model_id == f"user/{name}"

    files = HfApi().list_repo_files(trainer.hub_model_id)
    assert {"model.safetensors", "config.json", "README.md", "last-checkpoint/model.safetensors"} <= set(files)
    loaded = transformers.ViTForImageClassification.from_pretrained(trainer.hub_model_id)
    for key, tensor in trainer.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], tensor, rtol=0, atol=0, msg=key)
