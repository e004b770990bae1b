"""`hubformers convert roberta-to-longformer`: the paper's recipe (copied positions, global projections from
the local ones), RoBERTa's outputs on what half a window covers, and a folder that loads and reads long input."""

import contextlib
import io

import pytest
import torch
import transformers
from transformers import AutoModelForMaskedLM, AutoTokenizer

import hubformers
from hubformers import cli
from hubformers.scripts.convert_roberta import convert

TINY_ROBERTA = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=34,  # 32 positions after RoBERTa's two padding rows
    type_vocab_size=1,
    layer_norm_eps=1e-5,
)


@pytest.fixture
def roberta_folder(tmp_path):
    model = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**TINY_ROBERTA)).eval()
    model.save_pretrained(tmp_path / "roberta")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "a": 5, "b": 6, "Ġ": 7, "Ġa": 8, "ab": 9}
    transformers.RobertaTokenizer(vocab=vocab, merges=[("Ġ", "a"), ("a", "b")]).save_pretrained(tmp_path / "roberta")
    return tmp_path / "roberta", model


def test_command_converts_with_the_papers_recipe(roberta_folder, tmp_path):
    folder, roberta = roberta_folder
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main(
            [
                "convert",
                "roberta-to-longformer",
                str(folder),
                str(tmp_path / "out"),
                "--max-length",
                "100",
                "--attention-window",
                "8",
            ]
        )
    assert "logit_difference" in printed.getvalue()
    ours = AutoModelForMaskedLM.from_pretrained(tmp_path / "out").eval()
    assert isinstance(ours, hubformers.LongformerForMaskedLM)
    assert ours.config.attention_window == [8, 8] and ours.config.max_input_length == 100

    # positions: RoBERTa's 32 learned rows, tiled (after the two padding rows)
    old = roberta.roberta.embeddings.position_embeddings.weight
    new = ours.longformer.embeddings.position_embeddings.weight
    assert new.shape == (102, 32)
    assert torch.equal(new[:34], old) and torch.equal(new[34:66], old[2:]) and torch.equal(new[98:], old[2:6])
    for ours_layer, roberta_layer in zip(ours.longformer.encoder.layer, roberta.roberta.encoder.layer):
        attention, reference = ours_layer.attention.self, roberta_layer.attention.self
        for name in ["query", "key", "value"]:
            assert torch.equal(getattr(attention, f"{name}_global").weight, getattr(reference, name).weight)
            assert torch.equal(getattr(attention, name).bias, getattr(reference, name).bias)

    # half a window (plus the token itself) is RoBERTa exactly; 100 tokens, past RoBERTa's 32, run
    input_ids = torch.randint(3, 100, (2, 5))
    with torch.no_grad():
        assert (roberta(input_ids).logits - ours(input_ids).logits).abs().max() <= 1e-5
        assert ours(torch.randint(3, 100, (1, 100))).logits.shape == (1, 100, 100)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer.model_max_length == 100


def test_refuses_what_is_not_roberta(tmp_path):
    transformers.BertForMaskedLM(
        transformers.BertConfig(**{**TINY_ROBERTA, "max_position_embeddings": 32})
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="not a RoBERTa config"):
        convert(tmp_path / "bert", tmp_path / "out", 64, 8)
