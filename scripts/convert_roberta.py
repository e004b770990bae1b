"""`hubformers convert roberta-to-longformer SRC DIR --max-length 4096 --attention-window 512`: a RoBERTa
masked-LM folder (transformers' `RobertaForMaskedLM`) as a Longformer that reads `--max-length` tokens.

The paper's recipe (Beltagy et al., 2020, Section 5): the Longformer starts from RoBERTa's weights; its
longer position table is RoBERTa's 512 learned positions copied over and over (RoBERTa's attention heads
lean on local patterns, which the copies keep intact at every offset); the global query/key/value
projections start as copies of the local ones. A sequence that fits in half a window gets RoBERTa's own
outputs, which the conversion checks. The tokenizer files in SRC, if any, are copied with the longer
`model_max_length`. Nothing comes from the network; weights are read from safetensors (pickle only with
`--allow-pickle`).
"""

import argparse
import json
from functools import partial
from pathlib import Path

import torch
from transformers import AutoTokenizer, RobertaConfig, RobertaForMaskedLM

from hubformers import LongformerConfig, LongformerForMaskedLM
from hubformers.scripts.checkpoints import (
    add_checkpoint_arguments,
    folder_weights,
    read_checkpoint,
)
from hubformers.scripts.conversion import verify_and_save

# RobertaConfig fields that LongformerConfig takes as they are
SHARED_FIELDS = [
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
]
LEGACY_NAMES = {".gamma": ".weight", ".beta": ".bias"}  # LayerNorm parameters in old BERT-style checkpoints


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="a RoBERTa masked-LM folder (config.json and weights)")
    parser.add_argument("output_dir", type=Path, help="where the Longformer folder goes")
    parser.add_argument("--max-length", type=int, default=4096, help="longest input, in tokens. Default: %(default)s.")
    parser.add_argument(
        "--attention-window", type=int, default=512, help="window of every layer (even). Default: %(default)s."
    )
    add_checkpoint_arguments(parser)


def longformer_config(roberta: RobertaConfig, max_length: int, attention_window: int) -> LongformerConfig:
    if roberta.model_type != "roberta":
        raise ValueError(f"{roberta.model_type!r} is not a RoBERTa config: expected model_type 'roberta'.")
    return LongformerConfig(
        **{name: getattr(roberta, name) for name in SHARED_FIELDS},
        max_position_embeddings=max_length + roberta.pad_token_id + 1,
        attention_window=attention_window,
        sep_token_id=roberta.eos_token_id,
    )


def tile_positions(table: torch.Tensor, rows: int, offset: int) -> torch.Tensor:
    """A position table of `rows` rows: the first `offset` (RoBERTa's padding rows) kept, then the learned
    positions repeated until the table is full."""
    learned = table[offset:]
    repeats = -(-(rows - offset) // len(learned))
    return torch.cat([table[:offset], learned.repeat(repeats, 1)[: rows - offset]])


def longformer_weights(roberta_state: dict[str, torch.Tensor], config: LongformerConfig) -> dict[str, torch.Tensor]:
    """RoBERTa's masked-LM weights under Longformer's names, with the longer position table and the global
    projections copied from the local ones."""
    state = {}
    for key, value in roberta_state.items():
        if key.endswith("position_ids"):  # a buffer that old checkpoints carry
            continue
        for old, new in LEGACY_NAMES.items():
            key = key.replace(old, new) if key.endswith(old) else key
        key = key.replace("roberta.", "longformer.", 1)
        state[key] = value
        for projection in ("query", "key", "value"):
            if f".attention.self.{projection}." in key:
                state[key.replace(f".{projection}.", f".{projection}_global.")] = value.clone()
    positions = "longformer.embeddings.position_embeddings.weight"
    state[positions] = tile_positions(state[positions], config.max_position_embeddings, config.pad_token_id + 1)
    return state


def check_same_outputs(roberta: RobertaForMaskedLM, ours: LongformerForMaskedLM, window: int) -> float:
    """On a sequence that fits in half a window (every token sees every other), the Longformer is RoBERTa."""
    length = min(window // 2 + 1, roberta.config.max_position_embeddings - roberta.config.pad_token_id - 1)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, roberta.config.vocab_size, (1, length), generator=generator)
    with torch.no_grad():
        difference = (roberta(input_ids).logits - ours(input_ids).logits).abs().max().item()
    if difference > 1e-4:
        raise ValueError(f"The converted model's logits differ from RoBERTa's by {difference:.3g} (expected <= 1e-4).")
    return difference


def convert(
    source: Path, output_dir: Path, max_length: int, attention_window: int, checkpoint=None, allow_pickle=False
):
    roberta_config = RobertaConfig.from_pretrained(source)
    config = longformer_config(roberta_config, max_length, attention_window)
    roberta_state = read_checkpoint(checkpoint or folder_weights(source), allow_pickle)
    model = LongformerForMaskedLM(config).eval()
    missing, unexpected = model.load_state_dict(longformer_weights(roberta_state, config), strict=False)
    tied = {"lm_head.decoder.weight", "lm_head.decoder.bias"}  # the tied decoder is often not saved
    if set(missing) - tied or unexpected:
        raise ValueError(
            f"{source} is not a RoBERTa masked-LM checkpoint: missing {sorted(set(missing) - tied)}, "
            f"unexpected {sorted(unexpected)}."
        )
    model.tie_weights()
    roberta = RobertaForMaskedLM.from_pretrained(source, config=roberta_config).eval()
    difference = verify_and_save(model, partial(check_same_outputs, roberta, window=attention_window), output_dir)
    if any((source / name).exists() for name in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        tokenizer = AutoTokenizer.from_pretrained(source)
        tokenizer.model_max_length = max_length
        tokenizer.save_pretrained(output_dir)
    return model, difference


def main(args: argparse.Namespace) -> None:
    _, difference = convert(
        args.source, args.output_dir, args.max_length, args.attention_window, args.checkpoint, args.allow_pickle
    )
    summary = {"max_length": args.max_length, "attention_window": args.attention_window, "logit_difference": difference}
    print(f"Converted RoBERTa {args.source} to a Longformer in {args.output_dir}: {json.dumps(summary)}")
