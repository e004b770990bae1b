"""VAE sharing: a saved folder loads as remote code where hubformers is not installed (and saves again), a model
pushed to the loopback Hub comes back identical and loads as remote code from there, and `Trainer` trains the
model as it is (the loss is the negative ELBO; no custom code)."""

import uuid

import pytest
import torch
from test_remote_code import run_without_hubformers
from test_vae import TINY_CONV, TINY_MLP, images
from transformers import AutoModel, Trainer, TrainingArguments

import hubformers

REMOTE_CHECK = """
expected = torch.load("expected.pt")
model = AutoModel.from_pretrained({source!r}, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
with torch.no_grad():
    diff = (model.reconstruct(expected["x"]) - expected["reconstruction"]).abs().max().item()
    tiled = model.decode(model.encode(expected["x"]).latents, tiled=True, tile_size=2).sample
assert diff <= 1e-5, diff  # another process may pick other conv kernels: rounding only
assert (tiled - expected["reconstruction"]).abs().max().item() <= 1e-4
processor = AutoImageProcessor.from_pretrained({source!r}, trust_remote_code=True)
assert type(processor).__module__.startswith("transformers_modules")
model.save_pretrained("resaved")
again = AutoModel.from_pretrained("resaved", trust_remote_code=True).eval()
with torch.no_grad():
    assert torch.equal(again.reconstruct(expected["x"]), model.reconstruct(expected["x"]))
print(sorted(os.listdir("resaved")))
"""


def save_expected(model, folder) -> None:
    x = images(2, 3, 16, 16)
    with torch.no_grad():
        torch.save({"x": x, "reconstruction": model.reconstruct(x)}, folder / "expected.pt")


@pytest.mark.slow  # the same checks run on the Hub copy in the default suite
def test_remote_code_round_trip_from_a_folder(tmp_path):
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV)).eval()
    model.save_pretrained(tmp_path / "model")
    hubformers.VAEImageProcessor.for_config(model.config).save_pretrained(tmp_path / "model")
    save_expected(model, tmp_path)
    out = run_without_hubformers(tmp_path, REMOTE_CHECK.format(source="model"))
    assert "modeling_vae.py" in out and "configuration_vae.py" in out and "checks.py" in out


def test_push_to_hub_and_remote_code_from_the_hub(hub, tmp_path):
    repo_id = f"user/vae-{uuid.uuid4().hex[:8]}"
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV)).eval()
    model.push_to_hub(repo_id)
    hubformers.VAEImageProcessor.for_config(model.config).push_to_hub(repo_id)
    pulled = AutoModel.from_pretrained(repo_id)
    assert isinstance(pulled, hubformers.VAEModel)
    for name, tensor in pulled.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    save_expected(model, tmp_path)
    run_without_hubformers(tmp_path, REMOTE_CHECK.format(source=repo_id))


class Blobs(torch.utils.data.Dataset):
    """Binary 8x8 images of one of four squares: easy to reconstruct, so a few Trainer steps must show learning."""

    def __init__(self, n: int = 256):
        generator = torch.Generator().manual_seed(0)
        corners = torch.randint(0, 4, (n,), generator=generator)
        self.x = torch.zeros(n, 1, 8, 8)
        for i, corner in enumerate(corners.tolist()):
            top, left = 4 * (corner // 2), 4 * (corner % 2)
            self.x[i, 0, top : top + 4, left : left + 4] = 1.0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i]}


def test_trainer_trains_the_elbo_as_it_is(tmp_path):
    model = hubformers.VAEModel(hubformers.VAEConfig(**TINY_MLP, initializer_range=0.1))
    data = Blobs()
    args = TrainingArguments(
        str(tmp_path),
        num_train_epochs=6,
        per_device_train_batch_size=32,
        learning_rate=1e-2,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        save_strategy="no",
        seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    # 64 pixels at p=0.5 would cost 44 nats; four templates cost at most log 4 = 1.4 nats plus slack
    assert before > 40 and after < 0.7 * before, (before, after)
