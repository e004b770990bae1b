"""Longformer: parity with transformers' Longformer on the same weights (global attention and padding
included), dilated windows against an explicit dense band attention, the heads' default global tokens,
torch.export with a dynamic length, the Auto classes and tokenizer, and clear errors on bad input."""

import inspect

import pytest
import torch
import transformers
from conftest import max_abs_diff
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer
from transformers.utils import TransformersKwargs
from typing_extensions import Unpack

import hubformers
from hubformers.modeling_common import FAST_PATHS
from hubformers.modeling_longformer import AttentionMasks

TOL = 1e-5

TINY_LONGFORMER = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    attention_window=[4, 8],
    max_position_embeddings=80,
    type_vocab_size=1,
    num_labels=3,
)


def reference_and_ours(tmp_path, reference_class, our_class, **overrides):
    """A transformers model with random weights, saved, and loaded into our class."""
    reference = reference_class(transformers.LongformerConfig(**{**TINY_LONGFORMER, **overrides})).eval()
    reference.save_pretrained(tmp_path)
    ours = our_class.from_pretrained(tmp_path).eval()
    return reference, ours


def inputs(batch: int, length: int, padded_tail: int = 0, global_positions=()):
    """Random ids, with the last `padded_tail` tokens of the last row padding, and a global mask."""
    input_ids = torch.randint(3, TINY_LONGFORMER["vocab_size"], (batch, length))
    attention_mask = torch.ones_like(input_ids)
    if padded_tail:
        input_ids[-1, length - padded_tail :] = 1
        attention_mask[-1, length - padded_tail :] = 0
    global_attention_mask = torch.zeros_like(input_ids)
    global_attention_mask[0, list(global_positions)] = 1
    if global_positions:
        global_attention_mask[-1, global_positions[0]] = 1  # rows with different numbers of global tokens
    return dict(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask)


def assert_global_attentions_match(expected, got, batch_inputs):
    """transformers' global probabilities are (batch, heads, padded tokens, G), with filler columns for rows
    that have fewer global tokens; compare the real ones."""
    counts = batch_inputs["global_attention_mask"].sum(-1)
    length = batch_inputs["input_ids"].shape[1]
    for e, g in zip(expected, got):
        for row, count in enumerate(counts.tolist()):
            assert max_abs_diff(e[row, :, :length, :count], g[row, :, :, :count]) <= TOL


@pytest.mark.parametrize(
    "length, padded_tail, global_positions",
    [(16, 0, ()), (13, 3, ()), (21, 4, (0, 5)), (8, 2, (1, 2, 3)), (30, 0, (29,))],
)
def test_masked_lm_matches_transformers(tmp_path, length, padded_tail, global_positions):
    reference, ours = reference_and_ours(tmp_path, transformers.LongformerForMaskedLM, hubformers.LongformerForMaskedLM)
    batch_inputs = inputs(2, length, padded_tail, global_positions)
    with torch.no_grad():
        expected = reference(**batch_inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**batch_inputs, output_hidden_states=True, output_attentions=True)
    assert max_abs_diff(expected.logits, got.logits) <= TOL
    assert len(got.hidden_states) == len(expected.hidden_states) == 3
    for e, g in zip(expected.hidden_states, got.hidden_states):
        assert max_abs_diff(e, g) <= TOL
    for e, g in zip(expected.attentions, got.attentions):
        assert e.shape == g.shape and max_abs_diff(e, g) <= TOL
    if global_positions:
        assert_global_attentions_match(expected.global_attentions, got.global_attentions, batch_inputs)


def test_base_model_with_pooler_and_embeddings_input(tmp_path):
    reference, ours = reference_and_ours(tmp_path, transformers.LongformerModel, hubformers.LongformerModel)
    batch_inputs = inputs(2, 11, 2, (0,))
    with torch.no_grad():
        expected, got = reference(**batch_inputs), ours(**batch_inputs)
        embeds = ours.get_input_embeddings()(batch_inputs["input_ids"])
        from_embeds = ours(inputs_embeds=embeds, global_attention_mask=batch_inputs["global_attention_mask"])
        expected_embeds = reference(inputs_embeds=embeds, global_attention_mask=batch_inputs["global_attention_mask"])
    assert max_abs_diff(expected.last_hidden_state, got.last_hidden_state) <= TOL
    assert max_abs_diff(expected.pooler_output, got.pooler_output) <= TOL
    assert max_abs_diff(expected_embeds.last_hidden_state, from_embeds.last_hidden_state) <= TOL


def question_answer_ids(batch: int, question: int, length: int) -> torch.Tensor:
    """<s> question </s></s> context </s>, as RoBERTa's tokenizer lays out a pair."""
    ids = torch.randint(3, TINY_LONGFORMER["vocab_size"], (batch, length))
    ids[:, 0] = 0
    ids[:, question + 1 : question + 3] = 2
    ids[:, -1] = 2
    return ids


@pytest.mark.parametrize(
    "head, make_inputs, outputs",
    [
        ("ForSequenceClassification", lambda: dict(input_ids=torch.randint(3, 100, (2, 19))), ["logits"]),
        ("ForTokenClassification", lambda: inputs(2, 14, 3, (0, 4)), ["logits"]),
        ("ForQuestionAnswering", lambda: dict(input_ids=question_answer_ids(2, 4, 23)), ["start_logits", "end_logits"]),
        ("ForMultipleChoice", lambda: dict(input_ids=question_answer_ids(6, 3, 17).view(2, 3, 17)), ["logits"]),
    ],
)
def test_heads_and_their_default_global_tokens_match_transformers(tmp_path, head, make_inputs, outputs):
    """With no `global_attention_mask`, both mark the paper's global tokens (first token, question)."""
    reference, ours = reference_and_ours(
        tmp_path,
        getattr(transformers, f"Longformer{head}"),
        getattr(hubformers, f"Longformer{head}"),
        num_labels=2 if head == "ForQuestionAnswering" else 3,  # start and end
    )
    batch_inputs = make_inputs()
    with torch.no_grad():
        expected, got = reference(**batch_inputs), ours(**batch_inputs)
    for name in outputs:
        assert max_abs_diff(getattr(expected, name), getattr(got, name)) <= TOL


def test_question_tokens_are_global_by_default():
    config = hubformers.LongformerConfig(**{**TINY_LONGFORMER, "num_labels": 2})
    model = hubformers.LongformerForQuestionAnswering(config).eval()
    with torch.no_grad():
        out = model(question_answer_ids(1, 4, 23), output_attentions=True)
    assert out.global_attentions[0].shape == (1, 4, 23, 5)  # <s> and the four question tokens


def test_tied_decoder_follows_the_word_embeddings():
    model = hubformers.LongformerForMaskedLM(hubformers.LongformerConfig(**TINY_LONGFORMER))
    assert model.lm_head.decoder.weight is model.longformer.embeddings.word_embeddings.weight


# --- dilation: the blocked computation against explicit dense attention -----------------------------------


def dense_reference(attention, hidden_states, masks: AttentionMasks) -> torch.Tensor:
    """The layer's attention written out with n x n scores: in a head of dilation d, token i attends to
    i + d*k (|k| <= W/2) and to the global tokens; global tokens attend to all, through the global projections;
    padding gets zero."""
    batch, n, hidden = hidden_states.shape
    heads, head_dim = attention.num_heads, attention.head_dim
    positions = torch.arange(n)
    offset = positions[None, :] - positions[:, None]
    dilation = torch.tensor(attention.dilations)[:, None, None]  # (heads, 1, 1)
    band = (offset % dilation == 0) & (offset.abs() <= attention.window // 2 * dilation)  # (heads, n, n)
    key_ok = ~masks.is_masked[:, None, None, :]
    global_key = masks.is_global[:, None, None, :]
    local_allowed = (band[None] & ~global_key | global_key) & key_ok  # (batch, heads, n, n)

    def attend(q_proj, k_proj, v_proj, allowed):
        q, k, v = (p(hidden_states).view(batch, n, heads, head_dim).transpose(1, 2) for p in (q_proj, k_proj, v_proj))
        scores = (q @ k.transpose(-1, -2)) / head_dim**0.5
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, n, hidden)

    local = attend(attention.query, attention.key, attention.value, local_allowed)
    full = attend(attention.query_global, attention.key_global, attention.value_global, key_ok.expand(-1, heads, n, -1))
    out = torch.where(masks.is_global[..., None], full, local)
    return out.masked_fill(masks.is_masked[..., None], 0.0)


@pytest.mark.parametrize(
    "window, dilation",
    [(4, 2), (6, 3), (8, 2), (8, 1), (2, 1), (8, 3), (6, 4), (2, 3), (4, 5), (8, [1, 3, 2, 3]), (6, [4, 1, 1, 2])],
)
@pytest.mark.parametrize("length", [5, 17, 40])
@pytest.mark.parametrize("global_and_padding", [True, False])
def test_dilated_windows_equal_dense_band_attention(window, dilation, length, global_and_padding):
    """Any even window with any dilation, one per head or the same for all (the blocked computation pads the
    sequence to whole units of its strands), against the dense band mask."""
    per_layer = [dilation] if isinstance(dilation, list) else dilation  # one layer, its heads' dilations
    config = hubformers.LongformerConfig(
        **{**TINY_LONGFORMER, "num_hidden_layers": 1, "attention_window": window, "attention_dilation": per_layer}
    )
    attention = hubformers.LongformerModel(config).encoder.layer[0].attention.self.eval()
    hidden_states = torch.randn(2, length, config.hidden_size)
    if global_and_padding:
        batch_inputs = inputs(2, length, padded_tail=2, global_positions=(0, 3) if length > 5 else (1,))
    else:
        batch_inputs = inputs(2, length)
    masks = AttentionMasks.build(batch_inputs["attention_mask"], batch_inputs["global_attention_mask"], torch.float32)
    with torch.no_grad():
        got, local_probs, global_probs = attention(hidden_states, masks, output_attentions=True)
        plain, _, _ = attention(hidden_states, masks)
        expected = dense_reference(attention, hidden_states, masks)
    with torch.enable_grad():
        trained, _, _ = attention(hidden_states, masks)  # keys and values of every block copied, not merged
    assert max_abs_diff(expected, got) <= TOL
    assert max_abs_diff(plain, got) <= TOL
    assert max_abs_diff(trained, got) <= TOL
    num_global = global_probs.shape[-1]
    assert local_probs.shape == (2, 4, length, num_global + window + 1)
    rows = ~(masks.is_masked | masks.is_global)
    torch.testing.assert_close(local_probs.sum(-1)[rows[:, None].expand(-1, 4, -1)], torch.ones(4 * rows.sum().item()))


def test_no_n_by_n_tensor():
    """At 512 tokens with window 32, no tensor the model makes holds n x n = 262,144 values per (batch, head)."""
    config = hubformers.LongformerConfig(**{**TINY_LONGFORMER, "attention_window": 32, "max_position_embeddings": 600})
    model = hubformers.LongformerModel(config).eval()
    batch_inputs = inputs(1, 512, 0, (0, 100))
    largest = []

    class Sizes(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    largest.append(t.numel())
            return out

    with torch.no_grad(), Sizes():
        model(**batch_inputs)
    # the largest are the band's scores/keys (~ n x (W + block) x heads) and the 64-wide MLP activations
    assert max(largest) < 512 * 512


# per-head dilations; and layers of one window, which share their band masks
EXPORTED_LAYOUTS = {"dilations": {"attention_dilation": [1, [1, 3, 2, 3]]}, "one window": {"attention_window": [4, 4]}}


@pytest.mark.parametrize("layout", EXPORTED_LAYOUTS.values(), ids=EXPORTED_LAYOUTS.keys())
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "with gradients"])
def test_torch_export_with_dynamic_length_and_global_tokens(grad, layout):
    """One program for every length in its range and any number of global tokens (a data-dependent size that
    the graph does not specialise on): equal to eager at other lengths, with other numbers of global tokens,
    none, and rows with different numbers."""
    config = hubformers.LongformerConfig(**{**TINY_LONGFORMER, **layout})
    model = hubformers.LongformerModel(config).eval()
    example = inputs(2, 13, 2, (0,))
    length = torch.export.Dim("length", min=2, max=70)
    with torch.set_grad_enabled(grad):
        program = torch.export.export(
            model, (), example, dynamic_shapes={name: {1: length} for name in example}
        ).module()
        for batch_inputs in [inputs(2, 40, 5, (0, 7, 9)), inputs(2, 7), inputs(2, 64, 0, (3,)), inputs(2, 2, 0, (1,))]:
            expected, got = model(**batch_inputs), program(**batch_inputs)
            assert max_abs_diff(got.last_hidden_state, expected.last_hidden_state) <= TOL
            assert max_abs_diff(got.pooler_output, expected.pooler_output) <= TOL


@pytest.mark.slow
def test_question_answering_exports_with_its_default_global_tokens():
    """The question's tokens, found in the ids, are global in the exported program too."""
    model = hubformers.LongformerForQuestionAnswering(
        hubformers.LongformerConfig(**{**TINY_LONGFORMER, "num_labels": 2})
    )
    length = torch.export.Dim("length", min=8, max=70)
    with torch.no_grad():
        example = dict(input_ids=question_answer_ids(2, 4, 23))
        exported = torch.export.export(model.eval(), (), example, dynamic_shapes={"input_ids": {1: length}})
        batch_inputs = dict(input_ids=question_answer_ids(2, 9, 41))
        assert max_abs_diff(exported.module()(**batch_inputs).end_logits, model(**batch_inputs).end_logits) <= TOL


@pytest.mark.slow
def test_compiles_to_one_graph_with_labels():
    """The input and label checks read no values under the compiler: one graph, the eager results."""
    model = hubformers.LongformerForMaskedLM(hubformers.LongformerConfig(**TINY_LONGFORMER)).eval()
    batch_inputs = dict(
        inputs(2, 13, 2, (0, 3)), labels=torch.randint(0, 100, (2, 13)).index_fill(1, torch.tensor([0]), -100)
    )
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected, got = model(**batch_inputs), compiled(**batch_inputs)
    assert max_abs_diff(got.logits, expected.logits) <= TOL and abs(got.loss - expected.loss) <= TOL


HEAD_BATCHES = {
    "Model": lambda: dict(inputs(2, 21, 3, (0, 6))),
    "ForMaskedLM": lambda: dict(inputs(2, 21, 3, (0, 6)), labels=torch.randint(0, 100, (2, 21))),
    "ForSequenceClassification": lambda: dict(input_ids=torch.randint(3, 100, (2, 19)), labels=torch.tensor([0, 2])),
    "ForTokenClassification": lambda: dict(inputs(2, 14, 3, (0, 4)), labels=torch.randint(0, 3, (2, 14))),
    "ForQuestionAnswering": lambda: dict(
        input_ids=question_answer_ids(2, 4, 23),
        start_positions=torch.tensor([6, 9]),
        end_positions=torch.tensor([8, 12]),
    ),
    "ForMultipleChoice": lambda: dict(
        input_ids=question_answer_ids(6, 3, 17).view(2, 3, 17), labels=torch.tensor([1, 2])
    ),
}


@pytest.mark.parametrize("head", list(HEAD_BATCHES))
def test_every_parameter_gets_a_gradient(head):
    """No dead parameter (DDP would need find_unused_parameters=True): the global keys' bias, which softmax
    ignores, is a buffer."""
    config = hubformers.LongformerConfig(
        **{**TINY_LONGFORMER, "num_labels": 2 if head == "ForQuestionAnswering" else 3}
    )
    model = getattr(hubformers, f"Longformer{head}")(config).train()
    outputs = model(**HEAD_BATCHES[head]())
    loss = outputs.last_hidden_state.square().mean() + outputs.pooler_output.sum() if head == "Model" else outputs.loss
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name


@pytest.mark.parametrize("head", list(HEAD_BATCHES))
def test_forward_signatures_are_transformers(head):
    """The same named arguments in the same order (Trainer keeps the dataset columns a forward names), and the
    options that transformers names (output_attentions, ...) typed in **kwargs."""
    ours = inspect.signature(getattr(hubformers, f"Longformer{head}").forward).parameters
    theirs = inspect.signature(getattr(transformers, f"Longformer{head}").forward).parameters
    in_kwargs = {"output_attentions", "output_hidden_states", "return_dict", "kwargs"}
    assert [name for name in ours if name != "kwargs"] == [name for name in theirs if name not in in_kwargs]
    assert ours["kwargs"].annotation == Unpack[TransformersKwargs]


@pytest.mark.parametrize("embeds", [False, True], ids=["ids", "embeddings"])
@pytest.mark.parametrize("head", list(HEAD_BATCHES))
def test_heads_take_token_types_positions_and_embeddings_as_transformers(tmp_path, head, embeds):
    reference, ours = reference_and_ours(
        tmp_path,
        getattr(transformers, f"Longformer{head}"),
        getattr(hubformers, f"Longformer{head}"),
        type_vocab_size=2,
        num_labels=2 if head == "ForQuestionAnswering" else 3,
    )
    batch_inputs = HEAD_BATCHES[head]()
    shape = batch_inputs["input_ids"].shape
    batch_inputs["token_type_ids"] = torch.randint(0, 2, shape)
    batch_inputs["position_ids"] = torch.randint(2, TINY_LONGFORMER["max_position_embeddings"], shape)
    if embeds:
        batch_inputs["inputs_embeds"] = ours.get_input_embeddings()(batch_inputs.pop("input_ids")).detach()
        if head == "ForSequenceClassification":  # transformers finds its default (the first token) in the ids
            batch_inputs["global_attention_mask"] = (torch.arange(shape[-1]) == 0).expand(shape).long()
    with torch.no_grad():
        expected, got = reference(**batch_inputs), ours(**batch_inputs)
    names = {"Model": ["last_hidden_state", "pooler_output"], "ForQuestionAnswering": ["start_logits", "end_logits"]}
    for name in names.get(head, ["logits"]) + (["loss"] if head != "Model" else []):
        assert max_abs_diff(getattr(expected, name), getattr(got, name)) <= TOL, name


def test_transformers_checkpoints_load_without_unused_or_missing_weights(tmp_path):
    reference = transformers.LongformerForMaskedLM(transformers.LongformerConfig(**TINY_LONGFORMER))
    reference.save_pretrained(tmp_path / "reference")
    ours, info = hubformers.LongformerForMaskedLM.from_pretrained(tmp_path / "reference", output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
    ours.save_pretrained(tmp_path / "ours")
    _, info = transformers.LongformerForMaskedLM.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])


# --- fast paths: longformer_fast_paths' replacements give the plain model's results ----------------------


def outputs_and_gradients(model, batch_inputs, grad: bool) -> list[torch.Tensor]:
    """The logits and, with `grad`, the loss's gradient on every parameter that gets one."""
    model.zero_grad()
    with torch.set_grad_enabled(grad):
        output = model(**batch_inputs, labels=batch_inputs["input_ids"])
    if not grad:
        return [output.logits]
    output.loss.backward()
    return [output.logits] + [p.grad.clone() for p in model.parameters() if p.grad is not None]


def recording(replacement, name: str, served: set):
    """`replacement`, adding `name` to `served` for each call it serves."""

    def call(*args):
        result = replacement(*args)
        if result is not None:
            served.add(name)
        return result

    return call


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "with gradients"])
def test_fast_replacements_give_the_plain_outputs(grad):
    """The fast paths installed (the global attention on the hidden states once; without gradients, the window
    merged with the global keys by log-sum-exp) give the outputs and gradients of the plain hooks."""
    model = hubformers.LongformerForMaskedLM(hubformers.LongformerConfig(**TINY_LONGFORMER)).eval()
    with torch.no_grad():  # biases start at zero, which would hide a wrong bias term
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(std=0.5)
    batch_inputs = inputs(2, 21, 4, (0, 5))
    served = set()
    with hubformers.fast_paths.disabled():  # which puts back the hooks from before it when the block ends
        plain = outputs_and_gradients(model, batch_inputs, grad)
        hubformers.fast_paths.install()
        for name, replacement in list(FAST_PATHS.attention.items()):
            FAST_PATHS.attention[name] = recording(replacement, name, served)
        fast = outputs_and_gradients(model, batch_inputs, grad)
    assert served == ({"longformer_global"} if grad else {"longformer_global", "longformer_band"})
    assert len(fast) == len(plain) > (10 if grad else 0)
    for f, p in zip(fast, plain):
        assert max_abs_diff(f, p) <= TOL


# --- adapters, hooks and offloading: the fast paths run the modules' own forwards -------------------------


def test_lora_on_every_linear_layer_and_its_merge():
    """LoRA on all linear layers: each projection's adapter changes the output once its B is non-zero (the
    global keys' and values' too, which the merged global projection reads), and the merged model gives the
    adapted model's output."""
    peft = pytest.importorskip("peft")
    model = hubformers.LongformerForMaskedLM(hubformers.LongformerConfig(**TINY_LONGFORMER)).eval()
    batch_inputs = inputs(2, 21, 4, (0, 5))
    with torch.no_grad():
        base = model(**batch_inputs).logits
        adapted = peft.get_peft_model(model, peft.LoraConfig(target_modules="all-linear", r=4)).eval()
        previous = adapted(**batch_inputs).logits
        assert max_abs_diff(previous, base) <= TOL  # B starts at zero
        for name in ["query", "key", "value", "query_global", "key_global", "value_global", "dense", "decoder"]:
            lora_b = [
                m.lora_B.default.weight for n, m in adapted.named_modules() if n.endswith(name) and hasattr(m, "lora_B")
            ]
            assert lora_b or name == "decoder"  # peft leaves the output layer out
            for weight in lora_b:
                weight.normal_()
            logits = adapted(**batch_inputs).logits
            assert not lora_b or max_abs_diff(logits, previous) > 1e-4, name
            previous = logits
        merged = adapted.merge_and_unload()
        assert type(merged.longformer.encoder.layer[0].attention.self.key_global) is torch.nn.Linear
        assert max_abs_diff(merged(**batch_inputs).logits, previous) <= TOL


def test_disk_offload_gives_the_plain_models_outputs(tmp_path):
    """accelerate's hooks load offloaded weights from disk in the modules' forwards, which the fast paths run."""
    model = hubformers.LongformerForMaskedLM(hubformers.LongformerConfig(**TINY_LONGFORMER)).eval()
    model.save_pretrained(tmp_path / "model")
    offloaded = hubformers.LongformerForMaskedLM.from_pretrained(
        tmp_path / "model", device_map="auto", max_memory={"cpu": 80_000}, offload_folder=tmp_path / "offload"
    ).eval()
    assert "disk" in offloaded.hf_device_map.values()
    batch_inputs = inputs(2, 21, 4, (0, 5))
    with torch.no_grad():
        assert max_abs_diff(offloaded(**batch_inputs).logits, model(**batch_inputs).logits) <= TOL


def test_losses_match_transformers(tmp_path):
    reference, ours = reference_and_ours(tmp_path, transformers.LongformerForMaskedLM, hubformers.LongformerForMaskedLM)
    batch_inputs = inputs(2, 15, 3, (0,))
    labels = torch.full_like(batch_inputs["input_ids"], -100)
    labels[:, 2:6] = batch_inputs["input_ids"][:, 2:6]
    with torch.no_grad():
        assert abs(reference(**batch_inputs, labels=labels).loss - ours(**batch_inputs, labels=labels).loss) <= TOL


def test_auto_classes_and_tokenizer_resolve(tmp_path):
    config = hubformers.LongformerConfig(**TINY_LONGFORMER)
    hubformers.LongformerForMaskedLM(config).save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), hubformers.LongformerConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), hubformers.LongformerModel)
    assert isinstance(AutoModelForMaskedLM.from_pretrained(tmp_path), hubformers.LongformerForMaskedLM)
    for auto_name in ["SequenceClassification", "TokenClassification", "QuestionAnswering", "MultipleChoice"]:
        model = getattr(transformers, f"AutoModelFor{auto_name}").from_config(config)
        assert isinstance(model, getattr(hubformers, f"LongformerFor{auto_name}"))
    # a folder with only the vocabulary: AutoTokenizer picks the tokenizer registered for our model type
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "a": 5, "b": 6, "Ġ": 7, "Ġa": 8, "ab": 9}
    transformers.RobertaTokenizer(vocab=vocab, merges=[("Ġ", "a"), ("a", "b")]).save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "tokenizer_config.json").unlink()
    config.save_pretrained(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert type(tokenizer).__name__ == "RobertaTokenizer"
    assert tokenizer("ab a")["input_ids"] == [0, 9, 8, 2]


# --- bad input: a ValueError that names what was expected and what came ----------------------------------


def test_sequence_beyond_the_position_table():
    model = hubformers.LongformerModel(hubformers.LongformerConfig(**TINY_LONGFORMER))
    model(torch.randint(3, 100, (1, 78)))  # 80 rows - pad_token_id - 1
    with pytest.raises(ValueError, match=r"at most 78 tokens.*got 79"):
        model(torch.randint(3, 100, (1, 79)))


def test_global_mask_of_the_wrong_shape():
    model = hubformers.LongformerModel(hubformers.LongformerConfig(**TINY_LONGFORMER))
    with pytest.raises(
        ValueError, match=r"`global_attention_mask` must have the input's shape \(2, 10\), got \(2, 9\)"
    ):
        model(torch.randint(3, 100, (2, 10)), global_attention_mask=torch.zeros(2, 9))


IDS = torch.randint(3, 100, (2, 10))
BAD_INPUTS = {
    "id beyond the vocabulary": (
        dict(input_ids=IDS.index_fill(1, torch.tensor([3]), 100)),
        r"`input_ids` must lie in \[0, 99\] \(config.vocab_size=100\), got \[100\]",
    ),
    "negative id": (dict(input_ids=IDS.index_fill(1, torch.tensor([0]), -1)), r"`input_ids` must lie in .*got \[-1\]"),
    "float ids": (dict(input_ids=IDS.float()), r"`input_ids` must hold integer indices, got torch.float32"),
    "token type beyond the table": (
        dict(input_ids=IDS, token_type_ids=torch.ones_like(IDS)),
        r"`token_type_ids` must lie in \[0, 0\] \(config.type_vocab_size=1\), got \[1\]",
    ),
    "position beyond the table": (
        dict(input_ids=IDS, position_ids=torch.arange(75, 85).expand(2, -1)),
        r"`position_ids` must lie in \[0, 79\] \(the position table, config.max_position_embeddings=80\), got \[80, 81,",
    ),
    "attention mask of another shape": (
        dict(input_ids=IDS, attention_mask=torch.ones(2, 11)),
        r"`attention_mask` must have the input's shape \(2, 10\), got \(2, 11\)",
    ),
    "empty batch": (
        dict(input_ids=IDS[:0]),
        r"`input_ids` must hold at least one sequence of at least one token, got shape \(0, 10\)",
    ),
    "empty sequence": (dict(input_ids=IDS[:, :0]), r"at least one token, got shape \(2, 0\)"),
    "embeddings of another width": (
        dict(inputs_embeds=torch.randn(2, 10, 31)),
        r"`inputs_embeds` must have shape \(batch, tokens, 32\), got \(2, 10, 31\)",
    ),
    "no input": (dict(attention_mask=torch.ones(2, 10)), "Pass exactly one of `input_ids` and `inputs_embeds`"),
}


def assert_refused_without_a_change(model, batch_inputs, message):
    """A ValueError before anything runs: the weights, and the random state that dropout would draw from,
    stay as they were."""
    weights = {name: t.clone() for name, t in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    with pytest.raises(ValueError, match=message):
        model(**batch_inputs)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(t, weights[name]) for name, t in model.state_dict().items())


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("head", ["Model", "ForMaskedLM"])
def test_bad_inputs_are_refused(case, head):
    model = getattr(hubformers, f"Longformer{head}")(hubformers.LongformerConfig(**TINY_LONGFORMER)).train()
    assert_refused_without_a_change(model, *BAD_INPUTS[case])


LABELS = {  # head: (inputs, labels out of range, the error)
    "ForMaskedLM": (
        dict(input_ids=IDS),
        IDS.index_fill(1, torch.tensor([2]), 100),
        r"`labels` must lie in \[0, 99\] \(vocab_size=100\) or be -100 \(ignored\), got \[100\]",
    ),
    "ForTokenClassification": (
        dict(input_ids=IDS),
        torch.full((2, 10), -100).index_fill(1, torch.tensor([2]), 3),
        r"`labels` must lie in \[0, 2\] \(num_labels=3\) or be -100 \(ignored\), got \[3\]",
    ),
    "ForMultipleChoice": (
        dict(input_ids=question_answer_ids(6, 3, 17).view(2, 3, 17)),
        torch.tensor([1, -1]),
        r"`labels` must lie in \[0, 2\] \(the 3 choices\) or be -100 \(ignored\), got \[-1\]",
    ),
}


@pytest.mark.parametrize("head", list(LABELS))
def test_labels_out_of_range_are_refused(head):
    model = getattr(hubformers, f"Longformer{head}")(hubformers.LongformerConfig(**TINY_LONGFORMER)).train()
    batch_inputs, labels, message = LABELS[head]
    assert_refused_without_a_change(model, dict(batch_inputs, labels=labels), message)


def test_multiple_choice_masks_of_another_shape_are_refused():
    model = hubformers.LongformerForMultipleChoice(hubformers.LongformerConfig(**TINY_LONGFORMER)).train()
    input_ids = question_answer_ids(6, 3, 17).view(2, 3, 17)
    message = r"`global_attention_mask` must have the input's shape \(2, 3, 17\), got \(6, 17\)"
    assert_refused_without_a_change(model, dict(input_ids=input_ids, global_attention_mask=torch.ones(6, 17)), message)


def test_token_labels_of_minus_100_are_ignored_as_in_transformers(tmp_path):
    reference, ours = reference_and_ours(
        tmp_path, transformers.LongformerForTokenClassification, hubformers.LongformerForTokenClassification
    )
    batch_inputs = inputs(2, 15, 3, (0,))
    labels = torch.randint(0, 3, (2, 15)).index_fill(1, torch.tensor([0, 4, 5]), -100)
    with torch.no_grad():
        expected, got = reference(**batch_inputs, labels=labels).loss, ours(**batch_inputs, labels=labels).loss
    assert abs(expected - got) <= TOL


def test_question_answering_positions_beyond_the_sequence_as_in_transformers(tmp_path):
    """Positions past the end are clamped to the length and left out of the loss, as transformers does."""
    reference, ours = reference_and_ours(
        tmp_path, transformers.LongformerForQuestionAnswering, hubformers.LongformerForQuestionAnswering, num_labels=2
    )
    batch_inputs = dict(input_ids=question_answer_ids(3, 4, 23))
    positions = dict(start_positions=torch.tensor([5, 30, 23]), end_positions=torch.tensor([40, 9, 22]))
    with torch.no_grad():
        expected, got = reference(**batch_inputs, **positions).loss, ours(**batch_inputs, **positions).loss
    assert abs(expected - got) <= TOL
    with pytest.raises(ValueError, match=r"both `start_positions` and `end_positions`.*got only `end_positions`"):
        ours(**batch_inputs, end_positions=positions["end_positions"])


def test_question_answering_needs_a_separator_without_a_mask():
    model = hubformers.LongformerForQuestionAnswering(hubformers.LongformerConfig(**TINY_LONGFORMER))
    with pytest.raises(ValueError, match=r"separator token \(sep_token_id=2\)"):
        model(torch.randint(3, 100, (2, 10)))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(attention_window=5), "`attention_window` of layer 0 must be even.*got attention_window=5"),
        (dict(attention_window=[4, 7]), "layer 1 must be even"),
        (dict(attention_window=[4]), r"one value per layer \(2\), got 1"),
        (dict(attention_dilation=0), r"`attention_dilation` must hold integers >= 1, got 0 for layer 0"),
        (dict(attention_dilation=[1, [1, 2, 0, 1]]), r"integers >= 1, got \[1, 2, 0, 1\] for layer 1"),
        (
            dict(attention_dilation=[1, [1, 2]]),
            r"`attention_dilation` of layer 1 needs one value per head \(4\).*got 2",
        ),
        (dict(attention_dilation=[1, 2, 3]), r"`attention_dilation` needs one value per layer \(2\), got 3"),
        (dict(hidden_size=30), r"`hidden_size` \(30\) must be divisible by `num_attention_heads` \(4\)"),
        (dict(pad_token_id=79), r"`pad_token_id` must be in \[0, max_position_embeddings - 1\)"),
    ],
)
def test_bad_config_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        hubformers.LongformerConfig(**{**TINY_LONGFORMER, **overrides})


def test_bad_labels():
    model = hubformers.LongformerForMaskedLM(hubformers.LongformerConfig(**TINY_LONGFORMER))
    with pytest.raises(ValueError, match=r"`labels` must be integer ids of the input's shape \(2, 10\)"):
        model(torch.randint(3, 100, (2, 10)), labels=torch.zeros(2, 9, dtype=torch.long))


def test_sequence_classification_decides_the_problem_type_per_call():
    """As ViT's classifier: the config's problem type stays unset, so integer labels after float ones still work."""
    model = hubformers.LongformerForSequenceClassification(hubformers.LongformerConfig(**TINY_LONGFORMER)).eval()
    input_ids = torch.randint(3, 100, (2, 9))
    with torch.no_grad():
        logits = model(input_ids).logits
        multi_labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
        multi = model(input_ids, labels=multi_labels).loss
        single = model(input_ids, labels=torch.tensor([0, 2])).loss
    assert model.config.problem_type is None
    expected_multi = torch.nn.functional.binary_cross_entropy_with_logits(logits, multi_labels)
    assert abs(multi.item() - expected_multi.item()) <= 1e-6
    assert abs(single.item() - torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).item()) <= 1e-6
