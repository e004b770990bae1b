"""Long documents that install with pip alone, and a byte-level BPE tokenizer trained on them in seconds.

The default corpus is the Python reference documentation that every CPython carries in
`pydoc_data.topics` (what `help("topic")` prints): 79 real documents, the longest about 15,000 BPE tokens,
under the PSF licence. Nothing is downloaded: no Hub data set or tokenizer is reachable offline, and the
Debian-only corpora (Jane Austen's novels in r-cran-janeaustenr) need more than pip. The split into train and
test documents is fixed (every `TEST_EVERY`-th document by title), independent of any training seed.

The tokenizer is RoBERTa's kind (byte-level BPE, special tokens `<s> <pad> </s> <unk> <mask>` with ids 0-4 as
in roberta-base), trained by the `tokenizers` library on the training documents and wrapped as transformers'
`RobertaTokenizer`, which `AutoTokenizer` gives for hubformers' Longformer.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import RobertaTokenizer

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as roberta-base numbers them
TEST_EVERY = 8


@dataclass(frozen=True)
class TextCorpus:
    """Documents split into train and test, with what a model card says about them."""

    name: str
    description: str
    train_documents: list[str]
    test_documents: list[str]


def load_python_docs() -> TextCorpus:
    from pydoc_data.topics import topics

    titles = sorted(topics)
    documents = [topics[title].strip() for title in titles]
    return TextCorpus(
        name="python-docs",
        description=(
            f"the {len(documents)} topics of the Python {_python_version()} language reference that CPython ships "
            "in `pydoc_data.topics` (PSF licence)"
        ),
        train_documents=[d for i, d in enumerate(documents) if i % TEST_EVERY != 0],
        test_documents=[d for i, d in enumerate(documents) if i % TEST_EVERY == 0],
    )


def _python_version() -> str:
    import sys

    return f"{sys.version_info.major}.{sys.version_info.minor}"


CORPORA = {"python-docs": load_python_docs}


def train_tokenizer(documents: list[str], vocab_size: int) -> RobertaTokenizer:
    """A byte-level BPE of `vocab_size` tokens (special ones included) learned from `documents`."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(documents, vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS)
    with tempfile.TemporaryDirectory() as folder:
        bpe.save_model(folder)
        vocab = json.loads((Path(folder) / "vocab.json").read_text(encoding="utf-8"))
        lines = (Path(folder) / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    return RobertaTokenizer(vocab=vocab, merges=merges)


class MaskedLMDataset(torch.utils.data.Dataset):
    """Each document tokenized and cut into sequences of at most `max_length` tokens (`<s> ... </s>`), the
    last piece of a document kept if it has at least `min_length` tokens; masking is the collator's job."""

    def __init__(self, tokenizer: RobertaTokenizer, documents: list[str], max_length: int, min_length: int = 16):
        body = max_length - 2
        self.sequences = []
        for document in documents:
            ids = tokenizer(document, add_special_tokens=False)["input_ids"]
            for start in range(0, len(ids), body):
                piece = ids[start : start + body]
                if len(piece) >= min_length:
                    self.sequences.append([tokenizer.bos_token_id, *piece, tokenizer.eos_token_id])

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return {"input_ids": self.sequences[index]}

    def num_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)
