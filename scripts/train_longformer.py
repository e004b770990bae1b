"""Train a Longformer masked language model from scratch (`hubformers train longformer`), leave a Hub-ready folder.

The default run learns a byte-level BPE tokenizer and a small Longformer on the Python reference documentation
that CPython ships (`pydoc_data.topics`: long real documents that install with pip alone, see
`hubformers.scripts.text_data`), cut into sequences of up to `--max-length` tokens, with transformers'
`Trainer` (15% of the tokens masked, RoBERTa's recipe). It reports the held-out documents' masked-LM loss,
perplexity and masked-token accuracy before and after training, and writes to `--output-dir`: config.json,
model.safetensors, the tokenizer (loaded by `AutoTokenizer`), the hubformers module files (for
`trust_remote_code=True`), eval_results.json and a README.md model card. `--push-to-hub REPO_ID` uploads it.
`--resume` continues from a checkpoint, though not bit for bit: the masking draws on the global random state, which
Trainer's data loader advances one batch ahead of each checkpoint.
"""

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    DataCollatorForLanguageModeling,
    EvalPrediction,
    Trainer,
    set_seed,
)

from hubformers import LongformerConfig, LongformerForMaskedLM, __version__
from hubformers.scripts.model_card import write_model_card
from hubformers.scripts.text_data import (
    CORPORA,
    MaskedLMDataset,
    TextCorpus,
    train_tokenizer,
)
from hubformers.scripts.training import (
    WARMUP_FRACTION,
    add_training_arguments,
    describe_hardware,
    final_folder,
    positive_int,
    prepare_output_dir,
    push_folder,
    save_metrics,
    training_arguments,
)

# CPU-sized presets (the paper's base model is 768 wide, 12 layers, windows of 512): width, depth, heads, MLP
# width, and one window per layer, growing with depth as in the paper (Section 4.1).
MODEL_SIZES = {
    "tiny": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, attention_window=[32, 64]
    ),
    "small": dict(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        attention_window=[64, 64, 128, 128],
    ),
}
MASK_PROBABILITY = 0.15
WEIGHT_DECAY = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="python-docs", help="Default: %(default)s.")
    parser.add_argument("--model-size", choices=list(MODEL_SIZES), default="small", help="Default: %(default)s.")
    parser.add_argument(
        "--max-length", type=positive_int, default=1024, help="Tokens per sequence. Default: %(default)s."
    )
    parser.add_argument("--vocab-size", type=positive_int, default=4096, help="BPE vocabulary. Default: %(default)s.")
    add_training_arguments(parser, epochs=4, batch_size=4, learning_rate=1e-3)
    parser.add_argument("--max-train-samples", type=positive_int, help="Train on the first N sequences only.")


class FixedMasks(torch.utils.data.Dataset):
    """The held-out sequences masked once, with a fixed seed, so that every evaluation sees the same task."""

    def __init__(self, sequences: MaskedLMDataset, collate, seed: int = 0):
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.items = [{key: value[0] for key, value in collate([item]).items()} for item in sequences]
        torch.random.set_rng_state(state)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def collator(tokenizer):
    """Batches for training (mask 15% of the tokens afresh, RoBERTa's recipe) and for evaluation (items of
    `FixedMasks`, already masked: pad the ids, -100 the labels)."""
    masking = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASK_PROBABILITY)

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        if "labels" not in items[0]:
            return masking(items)
        length = max(len(item["input_ids"]) for item in items)

        def pad(key, value):
            return torch.stack([F.pad(item[key], (0, length - len(item[key])), value=value) for item in items])

        input_ids = pad("input_ids", tokenizer.pad_token_id)
        attention_mask = (input_ids != tokenizer.pad_token_id).long()
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": pad("labels", -100)}

    return collate


def masked_accuracy(prediction: EvalPrediction) -> dict[str, float]:
    labels = prediction.label_ids
    masked = labels != -100
    return {"accuracy": float((prediction.predictions[masked] == labels[masked]).mean())}


def new_model(model_size: str, tokenizer, max_length: int) -> LongformerForMaskedLM:
    config = LongformerConfig(
        **MODEL_SIZES[model_size],
        vocab_size=len(tokenizer),
        max_position_embeddings=max_length + tokenizer.pad_token_id + 1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )
    return LongformerForMaskedLM(config)


def card_values(args, corpus: TextCorpus, train_set, test_set, trainer, before: dict, after: dict, minutes: float):
    """What `model_cards/longformer.md` asks for."""
    repo_id = args.push_to_hub or str(args.output_dir)
    config, world_size = trainer.model.config, trainer.args.world_size
    return dict(
        model_name=repo_id.rstrip("/").split("/")[-1],
        repo_id=repo_id,
        corpus_name=corpus.name,
        corpus_description=corpus.description,
        train_documents=len(corpus.train_documents),
        test_documents=len(corpus.test_documents),
        train_sequences=len(train_set),
        train_tokens=f"{train_set.num_tokens():,}",
        test_sequences=len(test_set),
        max_length=args.max_length,
        vocab_size=config.vocab_size,
        loss_before=f"{before['eval_loss']:.3f}",
        loss=f"{after['eval_loss']:.3f}",
        loss_value=round(after["eval_loss"], 4),
        perplexity=f"{math.exp(after['eval_loss']):.1f}",
        accuracy_percent=f"{after['eval_accuracy']:.2%}",
        accuracy_before_percent=f"{before['eval_accuracy']:.2%}",
        model_size=args.model_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        attention_window=", ".join(map(str, config.attention_window)),
        num_parameters=f"{trainer.model.num_parameters():,}",
        epochs=f"{args.epochs:g}",
        batch_size=args.batch_size * world_size,
        learning_rate=f"{args.learning_rate:g}",
        weight_decay=WEIGHT_DECAY,
        warmup_percent=f"{WARMUP_FRACTION:.0%}",
        mask_percent=f"{MASK_PROBABILITY:.0%}",
        seed=args.seed,
        train_minutes=f"{minutes:.1f}",
        hardware=describe_hardware(world_size),
        hubformers_version=__version__,
        torch_version=torch.__version__,
    )


def main(args: argparse.Namespace) -> None:
    args.output_dir = args.output_dir or Path(f"outputs/longformer-{args.corpus}")
    checkpoint = prepare_output_dir(args)
    set_seed(args.seed)
    corpus = CORPORA[args.corpus]()
    tokenizer = train_tokenizer(corpus.train_documents, args.vocab_size)
    train_set = MaskedLMDataset(tokenizer, corpus.train_documents, args.max_length)
    if args.max_train_samples:
        train_set.sequences = train_set.sequences[: args.max_train_samples]
    collate = collator(tokenizer)
    test_set = FixedMasks(MaskedLMDataset(tokenizer, corpus.test_documents, args.max_length), collate)
    model = new_model(args.model_size, tokenizer, args.max_length)

    trainer = Trainer(
        model=model,
        args=training_arguments(
            args,
            weight_decay=WEIGHT_DECAY,
            per_device_eval_batch_size=args.batch_size,
            logging_strategy="steps",
            logging_steps=10,
        ),
        train_dataset=train_set,
        eval_dataset=test_set,
        data_collator=collate,
        processing_class=tokenizer,
        compute_metrics=masked_accuracy,
        preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1),
    )
    before = trainer.evaluate()
    train_metrics = trainer.train(resume_from_checkpoint=checkpoint).metrics
    after = trainer.evaluate()
    with final_folder(trainer) as folder:
        trainer.save_model(folder)  # model, config, module files and tokenizer; on rank 0 only
        if not trainer.is_world_process_zero():
            return
        save_metrics(folder, "eval", {**after, "eval_loss_before_training": before["eval_loss"]})
        minutes = train_metrics["train_runtime"] / 60
        values = card_values(args, corpus, train_set, test_set, trainer, before, after, minutes)
        write_model_card("longformer", values, folder / "README.md")
    print(
        f"held-out masked-LM loss {before['eval_loss']:.3f} -> {after['eval_loss']:.3f} "
        f"(perplexity {math.exp(after['eval_loss']):.1f}), masked-token accuracy "
        f"{before['eval_accuracy']:.2%} -> {after['eval_accuracy']:.2%} on {len(test_set)} {corpus.name} sequences"
    )
    print(f"model saved to {args.output_dir}")
    if args.push_to_hub:
        print(f"pushed to {push_folder(args.output_dir, args.push_to_hub)}")
