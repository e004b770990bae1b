"""`hubformers export onnx DIR OUT`: a saved model as ONNX graphs for onnxruntime (and optimum's `ORTModel...`).

Each graph is exported by torch.onnx's dynamo exporter (`torch.onnx.export(..., dynamo=True)`, torch.export
underneath, which sees the plain PyTorch ops: the CPU fast paths stand aside while a graph is traced) with a
dynamic batch and a dynamic image size or sequence length. It is then run in onnxruntime at another batch and
size than the export's and compared with the PyTorch model (max abs diff <= `TOLERANCE`). OUT receives the
graphs, the model's `config.json` and the folder's processor or tokenizer files, laid out as optimum expects:

- ViT, Swin: `model.onnx`, `pixel_values` -> `logits` (classifiers) or `last_hidden_state`;
- CLIP: `model.onnx` (`input_ids`, `attention_mask`, `pixel_values` -> `logits_per_image`, `logits_per_text`,
  `text_embeds`, `image_embeds`), and each tower on its own, `text_model.onnx` and `vision_model.onnx`;
- Longformer: `model.onnx`, `input_ids`, `attention_mask`, `global_attention_mask` -> the head's outputs;
- VAE: `encoder_model.onnx` (`pixel_values` -> `latent_mean`, `latent_logvar`) and `decoder_model.onnx`
  (`latents` -> `sample`, the decoder's mean image).
"""

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig

import hubformers

TOLERANCE = 1e-4
# Weights are in the graphs; everything else of the folder (processor, tokenizer, module files) is copied beside.
NOT_COPIED = {".safetensors", ".bin", ".pt", ".onnx"}
DYNAMIC = torch.export.Dim.DYNAMIC


class Outputs(nn.Module):
    """`model.method(**inputs)` as a module of tensors in, a tuple of the named outputs out: what an ONNX graph
    can hold. `fixed` are keyword arguments that are not graph inputs (e.g. `interpolate_pos_encoding=True`)."""

    def __init__(self, model: nn.Module, input_names: list[str], output_names: list[str], method="forward", **fixed):
        super().__init__()
        self.model, self.method, self.fixed = model, method, fixed
        self.input_names, self.output_names = input_names, output_names

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = getattr(self.model, self.method)(**dict(zip(self.input_names, tensors)), **self.fixed)
        return tuple(outputs[name] for name in self.output_names)


@dataclass
class Graph:
    """One ONNX file: the module traced, its inputs at export and at the check, and the dims that vary."""

    name: str
    module: Outputs
    export_inputs: tuple[torch.Tensor, ...]
    check_inputs: tuple[torch.Tensor, ...]
    dynamic_dims: tuple[tuple[int, ...], ...]  # per input, the dims that vary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a folder saved by save_pretrained (hubformers or transformers)")
    parser.add_argument("output_dir", type=Path, help="where the .onnx files, config and processor files go")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch.onnx's)")


def main(args: argparse.Namespace) -> None:
    written = export(args.model, args.output_dir, opset=args.opset)
    for path, difference in written.items():
        print(f"{path}: onnxruntime matches PyTorch at another size (max abs diff {difference:.2e})")


def load_model(folder: Path) -> nn.Module:
    """The model class the folder's config names (`architectures`), from hubformers, in eval mode."""
    config = AutoConfig.from_pretrained(folder)
    name = (config.architectures or [None])[0]
    if not hasattr(hubformers, str(name)):
        raise ValueError(f"{folder}: config.json names architecture {name!r}, which is not a hubformers model class.")
    return getattr(hubformers, name).from_pretrained(folder).eval()


def image_batch(config, batch: int, grow: int = 0) -> torch.Tensor:
    """Random images at the config's size, each side `grow` pixels larger (or smaller, when negative)."""
    height, width = hubformers.configuration_utils.to_pair(config.image_size)
    return torch.randn(batch, config.num_channels, height + grow, width + grow)


def text_batch(config, batch: int, length: int, ends_with_eos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (avoiding the special ids) and an attention mask whose last row is padded, so that the check
    covers padding; with `ends_with_eos`, each row's last real token is `config.eos_token_id` (CLIP pools there)."""
    special = {config.pad_token_id, config.bos_token_id, config.eos_token_id} - {None}
    ordinary = torch.tensor([i for i in range(config.vocab_size) if i not in special])
    input_ids = ordinary[torch.randint(len(ordinary), (batch, length))]
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, length // 2 :] = 0
    if ends_with_eos:
        input_ids[torch.arange(batch), attention_mask.sum(1) - 1] = config.eos_token_id
    return input_ids, attention_mask


def image_graphs(model: nn.Module) -> list[Graph]:
    config = model.config
    output = "logits" if hasattr(model, "classifier") else "last_hidden_state"
    fixed = {"interpolate_pos_encoding": True} if isinstance(model, hubformers.ViTPreTrainedModel) else {}
    # a size that is no multiple of the export's: new position grids, and for Swin other padding
    grow = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    if isinstance(model, hubformers.SwinPreTrainedModel):
        grow = 3 * grow + 1
    module = Outputs(model, ["pixel_values"], [output], **fixed)
    return [Graph("model", module, (image_batch(config, 2),), (image_batch(config, 3, grow),), ((0, 2, 3),))]


def clip_graphs(model: hubformers.CLIPModel) -> list[Graph]:
    text, vision = model.config.text_config, model.config.vision_config
    patch = vision.patch_size if isinstance(vision.patch_size, int) else vision.patch_size[0]
    length = min(8, text.max_position_embeddings)
    export_text, check_text = text_batch(text, 2, length, True), text_batch(text, 3, length - 3, True)
    export_image, check_image = image_batch(vision, 2), image_batch(vision, 3, patch)
    text_dims, image_dims = ((0, 1), (0, 1)), ((0, 2, 3),)
    joint = Outputs(
        model,
        ["input_ids", "attention_mask", "pixel_values"],
        ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"],
        interpolate_pos_encoding=True,
    )
    text_tower = Outputs(model, ["input_ids", "attention_mask"], ["pooler_output"], "get_text_features")
    vision_tower = Outputs(
        model, ["pixel_values"], ["pooler_output"], "get_image_features", interpolate_pos_encoding=True
    )
    return [
        Graph("model", joint, (*export_text, export_image), (*check_text, check_image), text_dims + image_dims),
        Graph("text_model", text_tower, export_text, check_text, text_dims),
        Graph("vision_model", vision_tower, (export_image,), (check_image,), image_dims),
    ]


def longformer_graphs(model: nn.Module) -> list[Graph]:
    if isinstance(model, hubformers.LongformerForMultipleChoice):
        raise ValueError("LongformerForMultipleChoice has no ONNX export here (its inputs have a choices dim).")
    config = model.config
    window = max(config.attention_window)
    export_ids, export_mask = text_batch(config, 2, window + 3)
    check_ids, check_mask = text_batch(config, 3, 2 * window + 5)
    export_global, check_global = torch.zeros_like(export_ids), torch.zeros_like(check_ids)
    export_global[:, 0] = 1
    check_global[:, :3] = 1  # another number of global tokens than at the export
    with torch.no_grad():
        produced = model(export_ids[:1]).keys()
    outputs = [name for name in ("logits", "start_logits", "end_logits") if name in produced]
    module = Outputs(model, ["input_ids", "attention_mask", "global_attention_mask"], outputs or ["last_hidden_state"])
    inputs = (export_ids, export_mask, export_global), (check_ids, check_mask, check_global)
    return [Graph("model", module, *inputs, ((0, 1),) * 3)]


def vae_graphs(model: hubformers.VAEModel) -> list[Graph]:
    config = model.config
    conv = config.architecture == "conv"
    low, high = config.pixel_range
    factor = config.downsampling_factor if conv else 0

    def images(batch: int, grow: int) -> torch.Tensor:
        return low + (high - low) * torch.rand_like(image_batch(config, batch, grow))

    image_dims = (0, 2, 3) if conv else (0,)
    export_images, check_images = images(2, 0), images(3, factor)
    export_latents = model.encode(export_images).latents.detach()
    check_latents = model.encode(check_images).latents.detach()
    encoder = Outputs(model, ["pixel_values"], ["latent_mean", "latent_logvar"], "encode")
    decoder = Outputs(model, ["latents"], ["sample"], "decode")
    return [
        Graph("encoder_model", encoder, (export_images,), (check_images,), (image_dims,)),
        Graph("decoder_model", decoder, (export_latents,), (check_latents,), (image_dims,)),
    ]


def graphs_of(model: nn.Module) -> list[Graph]:
    if isinstance(model, hubformers.CLIPModel):
        return clip_graphs(model)
    if isinstance(model, hubformers.VAEModel):
        return vae_graphs(model)
    if isinstance(model, hubformers.LongformerPreTrainedModel):
        return longformer_graphs(model)
    if isinstance(model, (hubformers.ViTPreTrainedModel, hubformers.SwinPreTrainedModel)):
        return image_graphs(model)
    raise ValueError(
        f"{type(model).__name__} has no ONNX export here; exported are ViT, Swin, CLIPModel, Longformer and the VAE."
    )


def export_graph(graph: Graph, path: Path, opset: int | None = None) -> float:
    """Export one graph to `path`, run it in onnxruntime on the check inputs and return the largest difference
    from PyTorch's outputs; raises if it exceeds TOLERANCE."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("Checking the export needs onnxruntime: pip install 'hubformers[onnx]'.") from error
    names = graph.module.input_names
    # one entry per parameter of `Outputs.forward`: its *tensors, one dict of varying dims per tensor
    dynamic_shapes = (tuple({dim: DYNAMIC for dim in dims} for dims in graph.dynamic_dims),)
    program = torch.onnx.export(
        graph.module.eval(),
        graph.export_inputs,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        input_names=names,
        output_names=graph.module.output_names,
        opset_version=opset,
    )
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: tensor.numpy() for name, tensor in zip(names, graph.check_inputs)})
    with torch.no_grad():
        expected = graph.module(*graph.check_inputs)
    difference = max((torch.from_numpy(g) - e).abs().max().item() for g, e in zip(got, expected))
    if difference > TOLERANCE:
        raise RuntimeError(f"{path.name}: onnxruntime differs from PyTorch by {difference:.3g} (> {TOLERANCE}).")
    return difference


def export(folder: str | Path, output_dir: str | Path, opset: int | None = None) -> dict[Path, float]:
    """Export the model saved in `folder` to ONNX graphs in `output_dir` with its config and processor files;
    returns each graph's path with its largest difference from PyTorch at the check size."""
    folder, output_dir = Path(folder), Path(output_dir)
    model = load_model(folder)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for graph in graphs_of(model):
        path = output_dir / f"{graph.name}.onnx"
        written[path] = export_graph(graph, path, opset)
    model.config.save_pretrained(output_dir)
    for path in folder.iterdir():
        if path.is_file() and path.suffix not in NOT_COPIED and path.name != "config.json":
            shutil.copy2(path, output_dir / path.name)
    return written
