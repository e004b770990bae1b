"""`hubformers train longformer`: the held-out loss falls, and the folder is Hub-ready: it reloads through
the Auto classes (model and tokenizer) with the reported loss, and a fill-mask pipeline runs on it."""

import contextlib
import io
import json

import pytest
from huggingface_hub import ModelCard
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

import hubformers
from hubformers import cli
from hubformers.scripts.text_data import load_python_docs

QUICK_FLAGS = [
    "--model-size",
    "tiny",
    "--epochs",
    "2",
    "--max-length",
    "128",
    "--vocab-size",
    "1024",
    "--max-train-samples",
    "96",
    "--batch-size",
    "8",
    "--learning-rate",
    "3e-3",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("longformer") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main(["train", "longformer", *QUICK_FLAGS, "--output-dir", str(folder)])
    return folder, printed.getvalue()


@pytest.mark.slow  # about two minutes on 2 shared cores
def test_held_out_loss_falls(quick_run):
    folder, printed = quick_run
    results = json.loads((folder / "eval_results.json").read_text())
    # before training the model is close to uniform over the vocabulary (ln 1024 = 6.93)
    assert results["eval_loss_before_training"] > 6.5
    assert results["eval_loss"] < results["eval_loss_before_training"] - 0.7
    assert "held-out masked-LM loss" in printed


@pytest.mark.slow
def test_folder_reloads_with_the_reported_loss(quick_run):
    folder, _ = quick_run
    for name in ["config.json", "model.safetensors", "tokenizer.json", "modeling_longformer.py", "README.md"]:
        assert (folder / name).exists(), name
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert isinstance(model, hubformers.LongformerForMaskedLM)
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer)
    assert len(fill("The class <mask> defines a new type.", top_k=3)) == 3
    card = ModelCard.load(folder / "README.md")
    results = json.loads((folder / "eval_results.json").read_text())
    assert card.data.eval_results[0].metric_value == round(results["eval_loss"], 4)


def test_corpus_split_is_fixed_and_documents_are_long():
    corpus = load_python_docs()
    assert len(corpus.train_documents) + len(corpus.test_documents) == 79
    assert load_python_docs().test_documents == corpus.test_documents
    assert max(len(d) for d in corpus.train_documents) > 40_000  # characters: thousands of tokens


def test_tokenizer_is_robertas_kind_and_sequences_fit():
    from hubformers.scripts.text_data import MaskedLMDataset, train_tokenizer

    documents = load_python_docs().train_documents[:6]
    tokenizer = train_tokenizer(documents, vocab_size=400)
    assert [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.mask_token_id] == [
        0,
        1,
        2,
        4,
    ]
    assert (
        tokenizer.decode(tokenizer("def f(x): return x")["input_ids"], skip_special_tokens=True) == "def f(x): return x"
    )
    sequences = MaskedLMDataset(tokenizer, documents, max_length=64)
    assert all(len(s["input_ids"]) <= 64 and s["input_ids"][0] == 0 and s["input_ids"][-1] == 2 for s in sequences)
    assert sequences.num_tokens() > len(sequences) * 16
