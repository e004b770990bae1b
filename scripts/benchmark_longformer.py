"""Longformer: ours vs transformers' LongformerModel on the same weights, long inputs with a global first token.

`hubformers benchmark longformer` times the forward of both (base size, 4,096 tokens, batch 1 by default),
interleaved in one process, and prints their peak memory. Run as a script
(`python -m hubformers.scripts.benchmark_longformer`), `--sweep 1024 2048 ...` measures time and peak memory
against the input length for ours, transformers' and full attention (transformers' RoBERTa with sdpa, the
same encoder with dense attention), writes them as JSON and plots them; `--windows 128 512` times ours and
transformers' at each window: the attention computation alone (ours: everything after the query/key/value
projections), the self-attention modules (projections included) and the whole model.

Peak memory is that of the tensors a forward allocates (weights and inputs excluded), tracked op by op with
a dispatch mode: deterministic, unlike the process's resident size on a shared machine.
"""

import argparse
import json
import statistics
import tempfile
import weakref
from pathlib import Path

import torch
import transformers
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from hubformers import LongformerConfig, LongformerModel
from hubformers.modeling_longformer import LongformerSelfAttention
from hubformers.scripts.benchmark import (
    Contender,
    Workload,
    add_device_arguments,
    dtype_name,
    load_quietly,
    place,
    synchronizer,
    time_interleaved,
)
from hubformers.scripts.checkpoints import json_object

# --- peak memory ------------------------------------------------------------------------------------------


class PeakMemory(TorchDispatchMode):
    """Bytes of the storages that ops allocate while the mode is on, and their peak. A storage counts from the
    op that makes it until the last tensor on it is gone; storages that existed before (weights, inputs,
    `existing`) never count, whatever views of them the ops make."""

    def __init__(self, existing: list[torch.Tensor]):
        super().__init__()
        self.ignored = {t.untyped_storage().data_ptr() for t in existing}
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, live tensors on it]
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.track(tensor)
        return out

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if address == 0 or address in self.ignored:
            return
        if address not in self.live:
            self.live[address] = [storage.nbytes(), 0]
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        self.live[address][1] += 1
        weakref.finalize(tensor, self.release, address)

    def release(self, address: int) -> None:
        entry = self.live[address]
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[address]


def peak_memory(model: torch.nn.Module, run) -> int:
    """Peak bytes a forward (`run()`, without gradients) allocates beyond the model's weights."""
    with torch.no_grad(), PeakMemory(list(model.parameters()) + list(model.buffers())) as tracker:
        run()
    return tracker.peak


# --- the models -------------------------------------------------------------------------------------------

BASE = dict(  # longformer-base-4096's architecture (its window of 512 in every layer)
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def models(overrides: dict, max_length: int, window: int) -> tuple[LongformerModel, torch.nn.Module]:
    """Ours with random weights, and transformers' LongformerModel loaded from our saved folder."""
    config = LongformerConfig(**{**BASE, **overrides}, attention_window=window, max_position_embeddings=max_length + 2)
    ours = LongformerModel(config, add_pooling_layer=False).eval()
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        reference = load_quietly(transformers.LongformerModel, folder, add_pooling_layer=False).eval()
    return ours, reference


def full_attention(ours: LongformerModel) -> torch.nn.Module:
    """transformers' RoBERTa with sdpa on the same weights: the dense attention Longformer replaces."""
    c = ours.config
    config = transformers.RobertaConfig(
        **{
            name: getattr(c, name)
            for name in [
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "type_vocab_size",
                "layer_norm_eps",
                "max_position_embeddings",
                "pad_token_id",
            ]
        },
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = transformers.RobertaModel(config, add_pooling_layer=False).eval()
    model.set_attn_implementation("sdpa")
    model.load_state_dict({k: v for k, v in ours.state_dict().items() if "_global" not in k}, strict=False)
    return model


def placed_models(args: argparse.Namespace, max_length: int, window: int) -> tuple[LongformerModel, torch.nn.Module]:
    """`models` on the benchmark's device, in its dtype."""
    ours, reference = models(args.config, max_length, window)
    return place(args, ours), place(args, reference)


def placed_inputs(args: argparse.Namespace, batch_size: int, length: int, vocab_size: int) -> dict[str, torch.Tensor]:
    """`inputs` on the benchmark's device."""
    batch = inputs(batch_size, length, args.global_tokens, vocab_size)
    return {name: place(args, tensor) for name, tensor in batch.items()}


def inputs(batch_size: int, length: int, global_tokens: int, vocab_size: int) -> dict[str, torch.Tensor]:
    input_ids = torch.randint(3, vocab_size, (batch_size, length))
    global_attention_mask = torch.zeros_like(input_ids)
    global_attention_mask[:, :global_tokens] = 1
    return dict(input_ids=input_ids, global_attention_mask=global_attention_mask)


def forward_flops(config: LongformerConfig, batch_size: int, length: int, global_tokens: int) -> float:
    """2 x the multiply-adds of the projections, the MLP and the band (W + 1 keys per query, as transformers
    and the paper count it) plus the global rows and columns; embeddings, norms and softmax left out."""
    width = config.hidden_size
    per_layer = [
        length * (4 * width * width + 2 * width * config.intermediate_size)
        + 2 * length * (window + 1 + 2 * global_tokens) * width
        for window in config.attention_window
    ]
    return 2.0 * batch_size * sum(per_layer)


# --- `hubformers benchmark longformer` --------------------------------------------------------------------


def workload(args: argparse.Namespace) -> Workload:
    ours, reference = placed_models(args, args.length, args.attention_window)
    batch = placed_inputs(args, args.batch_size, args.length, ours.config.vocab_size)
    for name, model in [("ours", ours), ("transformers", reference)]:
        print(f"peak memory of one forward, {name}: {peak_memory(model, lambda m=model: m(**batch)) / 2**20:.0f} MiB")

    def contender(name, model):
        return Contender(name, model, forward=lambda: model(**batch).last_hidden_state)

    return Workload(
        description=f"Longformer {args.length} tokens, window {args.attention_window}, {args.global_tokens} global",
        contenders=[contender("ours", ours), contender("transformers", reference)],
        forward_flops=forward_flops(ours.config, args.batch_size, args.length, args.global_tokens),
        modes=("forward",),
    )


# --- `--windows`: does a smaller window pay? ---------------------------------------------------------------


def attention_only(model: LongformerModel, batch: dict) -> callable:
    """Ours' attention computation without the projections: the first layer's band and global attention on
    projected queries, keys and values (the same in every layer of the same window)."""
    attention: LongformerSelfAttention = model.encoder.layer[0].attention.self
    with torch.no_grad():
        hidden = model.embeddings(batch["input_ids"])
        masks = type_masks(batch, hidden.dtype)
        shape = (*hidden.shape[:2], attention.num_heads, attention.head_dim)
        q, k, v = (p(hidden).view(shape) for p in (attention.query, attention.key, attention.value))

    def run():
        with torch.no_grad():
            attention.windowed_attention(q, k, v, masks, need_weights=False)
            attention.global_attention(hidden, masks)

    return run


def type_masks(batch: dict, dtype: torch.dtype):
    from hubformers.modeling_longformer import AttentionMasks

    return AttentionMasks.build(torch.ones_like(batch["input_ids"]), batch["global_attention_mask"], dtype)


def self_attention_modules(model: torch.nn.Module, batch: dict, ours: bool) -> callable:
    """The first layer's self-attention module (projections included), on the embeddings."""
    with torch.no_grad():
        hidden = model.embeddings(batch["input_ids"])
    if ours:
        attention, masks = model.encoder.layer[0].attention.self, type_masks(batch, hidden.dtype)
        return lambda: attention(hidden, masks)
    attention = model.encoder.layer[0].attention.self
    # transformers' module takes the mask its model builds: 0 local, +max global, with flags precomputed
    mask = torch.zeros(batch["input_ids"].shape, dtype=hidden.dtype, device=hidden.device)
    mask[batch["global_attention_mask"] > 0] = torch.finfo(hidden.dtype).max
    is_global = mask > 0
    return lambda: attention(
        hidden, mask, is_index_masked=mask < 0, is_index_global_attn=is_global, is_global_attn=True
    )


def compare_windows(args: argparse.Namespace) -> dict:
    """Time per window: ours' attention alone, both self-attention modules, both whole models."""
    steps = {}
    for window in args.windows:
        ours, reference = placed_models(args, args.length, window)
        batch = placed_inputs(args, 1, args.length, ours.config.vocab_size)
        steps[f"ours attention w{window}"] = attention_only(ours, batch)
        steps[f"ours self-attention w{window}"] = self_attention_modules(ours, batch, ours=True)
        steps[f"transformers self-attention w{window}"] = self_attention_modules(reference, batch, ours=False)
        steps[f"ours model w{window}"] = lambda m=ours, b=batch: m(**b)
        steps[f"transformers model w{window}"] = lambda m=reference, b=batch: m(**b)
    with torch.no_grad():
        times = time_interleaved(steps, "windows", args.repeats, args.warmup, synchronizer(args.device))
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    small, large = min(args.windows), max(args.windows)
    ratios = {
        part: medians[f"{part} w{small}"] / medians[f"{part} w{large}"]
        for part in [
            "ours attention",
            "ours self-attention",
            "transformers self-attention",
            "ours model",
            "transformers model",
        ]
    }
    return {
        "length": args.length,
        "windows": args.windows,
        "device": str(args.device),
        "dtype": dtype_name(args.dtype),
        "median_s": medians,
        f"w{small}_over_w{large}": ratios,
    }


# --- `--sweep`: time and memory against length ------------------------------------------------------------


def sweep(args: argparse.Namespace) -> dict:
    """Per length: median time of `--repeats` forwards and the peak memory, ours / transformers' / full
    attention (this one up to `--full-max-length`)."""
    ours, reference = placed_models(args, max(args.sweep), args.attention_window)
    c = ours.config
    description = f"{c.num_hidden_layers} layers x {c.hidden_size}, window {args.attention_window}"
    results = {"lengths": args.sweep, "description": description, "seconds": {}, "peak_mib": {}}
    results |= {"device": str(args.device), "dtype": dtype_name(args.dtype)}
    full = place(args, full_attention(ours))
    for length in args.sweep:
        batch = placed_inputs(args, 1, length, ours.config.vocab_size)
        plain = {"input_ids": batch["input_ids"]}
        contenders = {"ours": (ours, batch), "transformers": (reference, batch)}
        if length <= args.full_max_length:
            contenders["full attention"] = (full, plain)
        steps = {name: (lambda m=m, b=b: m(**b)) for name, (m, b) in contenders.items()}
        with torch.no_grad():
            times = time_interleaved(steps, f"{length} tokens", args.repeats, args.warmup, synchronizer(args.device))
        for name, (model, model_inputs) in contenders.items():
            results["seconds"].setdefault(name, {})[length] = statistics.median(times[name])
            peak = peak_memory(model, lambda m=model, b=model_inputs: m(**b))
            results["peak_mib"].setdefault(name, {})[length] = peak / 2**20
        print(json.dumps({k: {n: v.get(length) for n, v in results[k].items()} for k in ["seconds", "peak_mib"]}))
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, key, label in [(axes[0], "seconds", "forward time (s)"), (axes[1], "peak_mib", "peak memory (MiB)")]:
        for name, values in results[key].items():
            lengths = sorted(int(n) for n in values)
            axis.plot(lengths, [values[n] if n in values else values[str(n)] for n in lengths], "o-", label=name)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("tokens")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    where = f"{results.get('dtype', 'float32')} {results.get('device', 'cpu').upper()}"
    figure.suptitle(f"Longformer {results['description']}, batch 1, first token global, {where} forward")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(batch_size=1)  # one 4,096-token document, the benchmark's workload
    parser.add_argument("--length", type=int, default=4096, help="tokens per input. Default: %(default)s.")
    parser.add_argument("--attention-window", type=int, default=512, help="Default: %(default)s.")
    parser.add_argument("--global-tokens", type=int, default=1, help="leading global tokens. Default: %(default)s.")
    parser.add_argument(
        "--config", type=json_object, default={}, help="LongformerConfig overrides, e.g. '{\"num_hidden_layers\": 2}'"
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m hubformers.scripts.benchmark_longformer --sweep ... | --windows ...`"""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", type=Path)
    add_device_arguments(parser)
    add_arguments(parser)
    parser.add_argument("--sweep", type=int, nargs="+", metavar="LENGTH", help="time and memory at these lengths")
    parser.add_argument("--full-max-length", type=int, default=8192, help="longest input for full attention")
    parser.add_argument("--plot", type=Path, help="with --sweep: write the plot here (PNG)")
    parser.add_argument("--windows", type=int, nargs="+", metavar="WINDOW", help="compare these windows")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.sweep:
        results = sweep(args)
        if args.plot:
            plot(results, args.plot)
    elif args.windows:
        results = compare_windows(args)
    else:
        parser.error(
            "pass --sweep LENGTH... or --windows WINDOW... (the ours-vs-transformers table is "
            "`hubformers benchmark longformer`)"
        )
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
