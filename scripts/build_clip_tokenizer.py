"""Build CLIP's tokenizer from the BPE vocabulary that ships in open_clip_torch: `python -m
hubformers.scripts.build_clip_tokenizer OUTPUT_DIR` writes a transformers `CLIPTokenizer` folder.

open_clip's `bpe_simple_vocab_16e6.txt.gz` (OpenAI's file) holds the merges; the vocabulary is derived from them
as OpenAI's `SimpleTokenizer` does: the 256 byte symbols, the same with the end-of-word mark "</w>", one token per
merge (the first 48,894), then <|startoftext|> and <|endoftext|>: 49,408 tokens, ids as OpenAI's and open_clip's.
Padding repeats <|endoftext|> (as openai/clip-* on the Hub do; the attention mask marks it) where open_clip pads
with id 0: a pad token of "!" (id 0) would turn every "!" of a text into a special token.
"""

import argparse
import gzip
import importlib.util
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

NUM_MERGES = 49152 - 256 - 2  # OpenAI's SimpleTokenizer keeps this many merges of the file
CONTEXT_LENGTH = 77  # CLIP's text position table


def default_bpe_path() -> Path:
    """open_clip's copy of OpenAI's BPE file, found without importing open_clip (it imports torch and timm)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        raise ValueError("open_clip_torch is not installed: `pip install open_clip_torch`, or pass the BPE file.")
    return Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"


def build_clip_tokenizer(bpe_path: Path | None = None, model_max_length: int = CONTEXT_LENGTH) -> CLIPTokenizer:
    """transformers' CLIPTokenizer with OpenAI's vocabulary; texts truncate to `model_max_length` tokens."""
    with gzip.open(bpe_path or default_bpe_path(), "rt", encoding="utf-8") as vocabulary:
        lines = vocabulary.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]  # line 0 is a version header
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        merges=merges,
        model_max_length=model_max_length,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--bpe", type=Path, help="The BPE file (default: open_clip's bpe_simple_vocab_16e6.txt.gz).")
    parser.add_argument("--model-max-length", type=int, default=CONTEXT_LENGTH, help="Default: %(default)s.")
    args = parser.parse_args(argv)
    build_clip_tokenizer(args.bpe, args.model_max_length).save_pretrained(args.output_dir)
    print(f"CLIP tokenizer written to {args.output_dir}")


if __name__ == "__main__":
    main()
