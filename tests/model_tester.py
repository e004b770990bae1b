"""One test suite for every model class hubformers ships, as transformers' `ModelTesterMixin` and `ConfigTester`
run one suite on every transformers model.

An architecture declares once, in a subclass of `ModelTester` (tests/test_<arch>_common.py): its tiny config,
a function making a small batch of inputs (and labels), its model classes and the reference class of each
(transformers' class, or diffusers' for the VAE). Every check below then runs for every one of its classes
(pytest parametrises `model_class`; ids are the class names). A check that fails because of a defect in our code
is marked `xfail(strict=True)` in the declaration's `xfail` table, keyed by (class name, check name), so the fix
shows as an XPASS; a deliberate, documented difference is skipped through `skip` with the reason.

The oracle is the reference: fp32 outputs on the same weights within `TOL`. The other checks compare our model
with itself under another setting (save/load, attention backend, fast paths, batching, checkpointing, adapters)
where the two must agree.
"""

import inspect
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import max_abs_diff
from safetensors.torch import save_file

from hubformers import chunking, fast_paths

TOL = 1e-5


# ----------------------------------------------------------------------------------------------------------
# helpers


def randomize(model: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Random values in every floating parameter: the libraries initialise LayerNorms, biases and tokens to
    constants, which would hide a parameter read from the wrong place."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_floating_point():
                parameter.normal_(0.0, std)
    return model.eval()


def flatten(output, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a model output (nested outputs and tuples of tensors included) by dotted name."""
    if isinstance(output, torch.Tensor):
        return {prefix: output}
    if isinstance(output, dict):  # ModelOutput; its None fields are left out
        items = output.items()
    elif isinstance(output, (tuple, list)):
        items = ((str(index), value) for index, value in enumerate(output))
    else:
        return {}
    tensors = {}
    for key, value in items:
        tensors.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return tensors


def assert_close(expected: dict, got: dict, tol: float = TOL, names=None, relative: bool = True) -> list[str]:
    """Every tensor the two have under the same name has the same shape and values within `tol` (times the
    magnitude where that exceeds 1, when `relative`: sums such as a log-likelihood in nats round in proportion);
    returns the names compared (at least one)."""
    names = sorted(set(expected) & set(got)) if names is None else names
    assert names, f"nothing to compare: {sorted(expected)} vs {sorted(got)}"
    for name in names:
        e, g = expected[name], got[name]
        assert e.shape == g.shape, f"{name}: {tuple(e.shape)} vs {tuple(g.shape)}"
        if e.is_floating_point() or g.is_floating_point():
            bound = tol * max(1.0, e.detach().float().abs().max().item()) if relative and e.numel() else tol
            assert max_abs_diff(e, g) <= bound, f"{name}: max abs diff {max_abs_diff(e, g):.3g} > {bound:.3g}"
        else:
            assert torch.equal(e, g), name
    return names


def same_value(a, b) -> bool:
    """Equal, a tuple and a list with the same items included (JSON has no tuples)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return list(a) == list(b)
    return a == b


def probe_loss(output) -> torch.Tensor:
    """A scalar that depends on every float output through fixed random weights (a plain sum would give no
    gradient through a LayerNorm's output)."""
    generator = torch.Generator().manual_seed(1)
    total = 0.0
    for tensor in flatten(output).values():
        if tensor.is_floating_point() and tensor.requires_grad:
            weights = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
            total = total + (tensor * weights).sum()
    return total


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}


def assert_same_gradients(expected: dict, got: dict, tol: float = TOL) -> None:
    assert expected.keys() == got.keys()
    for name, e in expected.items():
        g = got[name]
        assert (e is None) == (g is None), f"{name}: a gradient in one run only"
        if e is not None:
            scale = max(1.0, e.abs().max().item())
            assert max_abs_diff(e, g) <= tol * scale, f"{name}: max abs diff {max_abs_diff(e, g):.3g}"


def plain_ops():
    """The models as plain PyTorch inside the block: the fast paths out of their seam (`fast_paths.disabled`)."""
    return fast_paths.disabled()


def seeded(function, *args, **kwargs):
    """`function` with the global RNG reset: dropout and sampling draw the same values each time."""
    torch.manual_seed(0)
    return function(*args, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# the suite


class ModelTester:
    """The checks every model class passes. An architecture's subclass sets the class attributes and implements
    `config_kwargs`, `make_inputs` (and `make_labels` where its heads take labels)."""

    all_model_classes: tuple = ()
    # our class -> the reference library's class (None where there is none)
    reference_classes: dict = {}
    # (class name or "*", check name) -> reason: a defect in our code, xfail(strict=True) until it is fixed
    xfail: dict = {}
    # (class name or "*", check name) -> reason: a documented, deliberate difference
    skip: dict = {}
    batch_size = 3
    # output names whose dims 0 and 1 both run over the batch (CLIP's image-text similarities)
    pairwise_outputs: tuple = ()
    # class name -> {prefix of parameters the class keeps but does not use: the reason}
    unused_parameters: dict = {}
    # config attributes every config of the architecture has (ConfigTester's common properties)
    common_properties: tuple = ("hidden_size", "num_attention_heads", "num_hidden_layers")
    # the config class -> the fewest arguments transformers' own tester builds that config with
    minimal_config_kwargs: dict = {}
    has_attentions = True
    # classes whose outputs follow `output_attentions` / `output_hidden_states` as arguments only, with the
    # reason (the config route is not checked for them)
    output_flags_not_from_config: dict = {}

    @pytest.fixture(autouse=True)
    def _one_thread(self):
        """One intra-op thread: on tiny models thread start-up costs more than it saves, and on a shared machine
        OpenMP's waiting threads slow them down by an order of magnitude."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)

    # -- what an architecture declares ------------------------------------------------------------------

    def config_kwargs(self, model_class) -> dict:
        """The tiny config of `model_class` as keyword arguments (the reference's config class takes them too)."""
        raise NotImplementedError

    def make_inputs(self, model_class, batch_size: int | None = None) -> dict:
        """A small batch of inputs for `model_class` (text with padding at the tail of some rows)."""
        raise NotImplementedError

    def make_labels(self, model_class, inputs: dict) -> dict:
        """Keyword arguments that make `model_class` return a loss; {} where it has none."""
        return {}

    def attention_shapes(self, model_class, inputs: dict) -> list[tuple]:
        """The shape of each layer's attention probabilities."""
        raise NotImplementedError

    def hidden_state_shapes(self, model_class, inputs: dict) -> dict[str, list[tuple]]:
        """Output name -> the shape of each of its hidden states."""
        raise NotImplementedError

    # -- how the checks reach the models (an architecture overrides these where its API differs) ----------

    def get_config(self, model_class, **overrides):
        return model_class.config_class(**{**self.config_kwargs(model_class), **overrides})

    def reference_config(self, model_class, **overrides):
        reference_class = self.reference_classes[model_class]
        return reference_class.config_class(**{**self.config_kwargs(model_class), **overrides})

    def build(self, model_class, **overrides):
        """Our model with random weights (every parameter), in eval mode."""
        return randomize(model_class(self.get_config(model_class, **overrides)))

    def build_reference(self, model_class, **overrides):
        reference_class = self.reference_classes[model_class]
        return randomize(reference_class(self.reference_config(model_class, **overrides)))

    def forward(self, model, inputs: dict, **kwargs):
        return model(**inputs, **kwargs)

    def outputs(self, model, inputs: dict, **kwargs) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return flatten(self.forward(model, inputs, **kwargs))

    def reference_outputs(self, reference, model_class, inputs: dict) -> dict[str, torch.Tensor]:
        """The reference's outputs under our output names."""
        with torch.no_grad():
            return flatten(reference(**inputs, output_hidden_states=True))

    def save_reference(self, reference, folder) -> None:
        """Write the reference model as its library does; our `from_pretrained(folder)` must load it."""
        reference.save_pretrained(folder)

    def load_in_reference(self, model_class, folder):
        """Load the folder our `save_pretrained` wrote with the reference library: every weight it needs there,
        none left over."""
        reference_class = self.reference_classes[model_class]
        config = reference_class.config_class.from_pretrained(folder)
        reference, info = reference_class.from_pretrained(folder, config=config, output_loading_info=True)
        assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
        return reference.eval()

    def loss(self, model, inputs: dict, labels: dict) -> torch.Tensor:
        """The training loss with labels, or a probe of all outputs for classes without a loss."""
        output = self.forward(model, inputs, **labels)
        loss = getattr(output, "loss", None)
        return loss if loss is not None else probe_loss(output)

    def takes(self, model_class, argument: str) -> bool:
        return argument in inspect.signature(model_class.forward).parameters

    # -- parametrisation --------------------------------------------------------------------------------

    def marks(self, name: str, check: str) -> list:
        marks = []
        for key in ((name, check), ("*", check)):
            if key in self.xfail:
                marks.append(pytest.mark.xfail(strict=True, reason=self.xfail[key]))
            if key in self.skip:
                marks.append(pytest.mark.skip(reason=self.skip[key]))
        return marks

    def config_classes(self) -> list:
        return list(dict.fromkeys(model_class.config_class for model_class in self.all_model_classes))

    def pytest_generate_tests(self, metafunc):
        check = metafunc.function.__name__
        if "model_class" in metafunc.fixturenames:
            params = [
                pytest.param(cls, id=cls.__name__, marks=self.marks(cls.__name__, check))
                for cls in self.all_model_classes
            ]
            metafunc.parametrize("model_class", params)
        if "config_class" in metafunc.fixturenames:
            params = [
                pytest.param(cls, id=cls.__name__, marks=self.marks(cls.__name__, check))
                for cls in self.config_classes()
            ]
            metafunc.parametrize("config_class", params)

    def example_class(self, config_class):
        return next(cls for cls in self.all_model_classes if cls.config_class is config_class)

    def needs_reference(self, model_class):
        if self.reference_classes.get(model_class) is None:
            pytest.skip(f"no reference implementation of {model_class.__name__}")

    # ======================================================================================================
    # configs (transformers' ConfigTester)

    def test_config_json_round_trip(self, config_class, tmp_path):
        kwargs = self.config_kwargs(self.example_class(config_class))
        config = config_class(**kwargs)
        from_json = config_class.from_dict(json.loads(config.to_json_string()))
        for key, value in kwargs.items():
            if not isinstance(value, dict):  # sub-configs are checked as configs of their own
                assert same_value(getattr(from_json, key), value), key
        config.to_json_file(tmp_path / "config.json")
        assert config_class.from_json_file(tmp_path / "config.json").to_dict() == config.to_dict()
        assert config_class.from_dict(config.to_dict()).to_dict() == config.to_dict()
        config.save_pretrained(tmp_path / "folder")
        assert config_class.from_pretrained(tmp_path / "folder").to_dict() == config.to_dict()
        config.save_pretrained(tmp_path / "repo" / "sub")
        assert config_class.from_pretrained(tmp_path / "repo", subfolder="sub").to_dict() == config.to_dict()

    def test_config_num_labels_and_common_arguments(self, config_class):
        kwargs = self.config_kwargs(self.example_class(config_class))
        config = config_class(**{**kwargs, "num_labels": 5})
        assert len(config.id2label) == len(config.label2id) == 5
        config.num_labels = 3
        assert len(config.id2label) == 3
        common = dict(output_hidden_states=True, output_attentions=True, return_dict=False, problem_type="regression")
        config = config_class(**{**kwargs, **common})
        for key, value in common.items():
            assert getattr(config, key) == value, key

    def test_config_common_properties(self, config_class):
        config = config_class(**self.config_kwargs(self.example_class(config_class)))
        for name in self.common_properties:
            assert hasattr(config, name), name
        assert config_class().to_dict()  # every argument has a default (check_config_can_be_init_without_params)

    def test_config_with_the_reference_testers_arguments(self, config_class):
        """Built from the few arguments transformers' own model tester passes, the rest left at the defaults."""
        kwargs = self.minimal_config_kwargs.get(config_class)
        if kwargs is None:
            pytest.skip(f"{config_class.__name__} has no reference tester")
        config = config_class(**kwargs)
        for key, value in kwargs.items():
            if isinstance(value, dict):  # a sub-config
                for sub_key, sub_value in value.items():
                    assert getattr(getattr(config, key), sub_key) == sub_value, f"{key}.{sub_key}"
            else:  # a scalar may be stored once per layer
                stored = getattr(config, key)
                assert stored == value or (isinstance(stored, list) and set(stored) == {value}), key

    # ======================================================================================================
    # save and load

    def test_save_load(self, model_class, tmp_path):
        """ours -> ours: the same weights, no missing or unexpected keys, the same outputs."""
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        expected = self.outputs(model, inputs)
        model.save_pretrained(tmp_path)
        assert (tmp_path / "config.json").exists() and (tmp_path / "model.safetensors").exists()
        loaded, info = model_class.from_pretrained(tmp_path, output_loading_info=True)
        assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
        assert_close(expected, self.outputs(loaded.eval(), inputs), tol=0.0)

    def test_reference_checkpoint_loads_in_ours(self, model_class, tmp_path):
        """reference -> ours: the reference's save_pretrained folder loads with our from_pretrained, every key
        used, and our outputs equal the reference's (hidden states and losses included)."""
        self.needs_reference(model_class)
        reference = self.build_reference(model_class)
        self.save_reference(reference, tmp_path)
        ours, info = model_class.from_pretrained(tmp_path, output_loading_info=True)
        assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
        self.assert_matches_reference(model_class, ours.eval(), reference)

    def test_our_checkpoint_loads_in_reference(self, model_class, tmp_path):
        """ours -> reference: the reference library loads our save_pretrained folder, same outputs."""
        self.needs_reference(model_class)
        model = self.build(model_class)
        model.save_pretrained(tmp_path)
        self.assert_matches_reference(model_class, model, self.load_in_reference(model_class, tmp_path))

    def assert_matches_reference(self, model_class, model, reference) -> None:
        inputs = self.make_inputs(model_class)
        inputs.update(self.make_labels(model_class, inputs))
        expected = self.reference_outputs(reference, model_class, inputs)
        got = self.outputs(model, inputs, **self.hidden_states_kwargs(model_class))
        compared = assert_close(expected, got, relative=False)  # the project's bar: max abs diff <= 1e-5
        assert "loss" in compared or not self.make_labels(model_class, inputs), compared

    def hidden_states_kwargs(self, model_class) -> dict:
        return {"output_hidden_states": True} if self.takes_hidden_states(model_class) else {}

    def takes_hidden_states(self, model_class) -> bool:
        return self.has_attentions

    def test_meta_device_init_and_low_memory_load(self, model_class, tmp_path):
        """Built under `torch.device("meta")` no tensor is allocated; `from_pretrained` (which builds on the meta
        device, then loads) leaves no tensor there, buffers included, and gives the saved model's outputs."""
        config = self.get_config(model_class)
        with torch.device("meta"):
            empty = model_class(config)
        assert all(t.is_meta for t in [*empty.parameters(), *empty.buffers()])
        model = self.build(model_class)
        model.save_pretrained(tmp_path)
        inputs = self.make_inputs(model_class)
        loaded = model_class.from_pretrained(tmp_path, device_map="cpu").eval()
        assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
        assert_close(self.outputs(model, inputs), self.outputs(loaded, inputs), tol=0.0)

    def test_missing_weights_are_initialised(self, model_class, tmp_path):
        """A checkpoint without most weights (a head on a new task, a tower into the joint model) loads with
        the missing ones initialised as a fresh model initialises them (transformers'
        test_can_init_all_missing_weights): constants equal, random tensors of the same spread, all finite."""
        torch.manual_seed(0)
        fresh = model_class(self.get_config(model_class))
        fresh.save_pretrained(tmp_path)
        state = fresh.state_dict()
        kept = next(iter(state))
        save_file({kept: state[kept].contiguous()}, tmp_path / "model.safetensors", metadata={"format": "pt"})
        loaded = model_class.from_pretrained(tmp_path).state_dict()
        for name, expected in state.items():
            got = loaded[name]
            if not expected.is_floating_point():
                assert torch.equal(expected, got), name
                continue
            assert torch.isfinite(got).all(), name
            if expected.numel() == 1 or expected.std() == 0:
                assert torch.equal(expected, got), (
                    f"{name}: {got.flatten()[:4].tolist()}, fresh {expected.flatten()[:4].tolist()}"
                )
            elif expected.numel() >= 64:  # fewer values give too noisy a spread
                ratio = got.std().item() / expected.std().item()
                assert 0.5 <= ratio <= 2, f"{name}: std {got.std().item():.3g}, fresh {expected.std().item():.3g}"

    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
    def test_half_precision_load(self, model_class, tmp_path, dtype):
        """`from_pretrained(dtype=...)`: the parameters have that dtype; a forward runs, finite, and close to the
        float32 model."""
        model = self.build(model_class)
        model.save_pretrained(tmp_path)
        half = model_class.from_pretrained(tmp_path, dtype=dtype).eval()
        keep = tuple(model_class._keep_in_fp32_modules or ())
        for name, parameter in half.named_parameters():
            if parameter.is_floating_point() and not any(part in keep for part in name.split(".")):
                assert parameter.dtype == dtype, name
        inputs = self.make_inputs(model_class)
        cast = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}
        expected, got = self.outputs(model, inputs), self.outputs(half, cast)
        for name in assert_close(expected, got, tol=math.inf):
            assert torch.isfinite(got[name]).all(), name
            scale = expected[name].abs().max().item()
            assert max_abs_diff(expected[name], got[name]) <= 0.05 * max(scale, 1.0), name

    def test_device_map_auto(self, model_class, tmp_path):
        """`_no_split_modules` names modules of the model, and `device_map="auto"` loads it (same outputs)."""
        model = self.build(model_class)
        assert model_class._no_split_modules, "no _no_split_modules"
        module = sys.modules[model_class.__module__]
        for name in model_class._no_split_modules:  # names of modules of the architecture (not typos)
            assert issubclass(getattr(module, name, type), torch.nn.Module), name
        model.save_pretrained(tmp_path)
        loaded = model_class.from_pretrained(tmp_path, device_map="auto").eval()
        inputs = self.make_inputs(model_class)
        assert_close(self.outputs(model, inputs), self.outputs(loaded, inputs), tol=0.0)

    def test_disk_offload(self, model_class, tmp_path):
        """With too little memory for all of it, accelerate offloads modules to disk and streams their weights
        in as they run: the same outputs."""
        model = self.build(model_class)
        model.save_pretrained(tmp_path / "model")
        size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        loaded = model_class.from_pretrained(
            tmp_path / "model",
            device_map="auto",
            max_memory={"cpu": size // 2},
            offload_folder=tmp_path / "offload",
        ).eval()
        assert "disk" in set(loaded.hf_device_map.values()), loaded.hf_device_map
        inputs = self.make_inputs(model_class)
        assert_close(self.outputs(model, inputs), self.outputs(loaded, inputs))

    # ======================================================================================================
    # equivalences of our own model

    def test_determinism(self, model_class):
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        assert_close(self.outputs(model, inputs), self.outputs(model, inputs), tol=0.0)

    def test_eager_matches_sdpa(self, model_class):
        if not model_class._supports_sdpa:
            pytest.skip(f"{model_class.__name__} has no sdpa path")
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        kwargs = self.hidden_states_kwargs(model_class)
        model.set_attn_implementation("eager")
        eager = self.outputs(model, inputs, **kwargs)
        model.set_attn_implementation("sdpa")
        assert_close(eager, self.outputs(model, inputs, **kwargs))

    @pytest.mark.slow
    def test_flex_attention_matches_eager(self, model_class):
        """In a child process: flex_attention compiles C++ for the CPU, and a crash there must fail this check
        rather than end the run."""
        if not model_class._supports_flex_attn:
            pytest.skip(f"{model_class.__name__} has no flex_attention path")
        tester = type(self)
        script = (
            f"import sys; sys.path[:0] = {sys.path!r}; import conftest; "
            f"from {tester.__module__} import {tester.__name__}; "
            f"{tester.__name__}().check_flex_attention({model_class.__name__!r})"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-3000:]}"

    def check_flex_attention(self, class_name: str) -> None:
        model_class = next(cls for cls in self.all_model_classes if cls.__name__ == class_name)
        torch.manual_seed(0)
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        model.set_attn_implementation("eager")
        eager = self.outputs(model, inputs)
        model.set_attn_implementation("flex_attention")
        assert_close(eager, self.outputs(model, inputs), tol=1e-4)

    def test_fast_paths_match_plain_ops(self, model_class):
        """The fast paths (oneDNN's fused linears, the C kernels, chunking, the merged attention steps) give the
        plain models' outputs and gradients."""
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        labels = self.make_labels(model_class, inputs)

        def run():
            model.zero_grad()
            outputs = self.outputs(model, inputs)
            seeded(self.loss, model, inputs, labels).backward()
            return outputs, gradients(model)

        assert fast_paths.installed()
        fast_outputs, fast_gradients = run()
        with plain_ops():
            assert not fast_paths.installed()
            plain_outputs, plain_gradients = run()
        assert_close(plain_outputs, fast_outputs)
        assert_same_gradients(plain_gradients, fast_gradients)

    def test_chunked_computation(self, model_class, monkeypatch):
        """Run over the smallest chunks (one token, image or block at a time; chunking.py), the model gives its
        outputs unchunked, as transformers' test_feed_forward_chunking."""
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        expected = self.outputs(model, inputs)
        sizes = []
        chunk_size = chunking.chunk_size
        monkeypatch.setattr(chunking, "CHUNK_BYTES", 1)
        monkeypatch.setattr(chunking, "chunk_size", lambda *args: sizes.append(chunk_size(*args)) or sizes[-1])
        got = self.outputs(model, inputs)
        if not sizes:
            pytest.skip(f"{model_class.__name__} runs nothing in chunks")
        assert min(sizes) == 1, sizes
        assert_close(expected, got)

    def test_batching_equivalence(self, model_class):
        """Row i of a batch gives what that input gives alone (text rows without their padding)."""
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        kwargs = self.hidden_states_kwargs(model_class)
        batched = self.outputs(model, inputs, **kwargs)
        for row in range(self.batch_size):
            single = self.outputs(model, self.row(inputs, row), **kwargs)
            for name, tensor in single.items():
                if tensor.ndim == 0:  # losses are means over the batch
                    continue
                assert_close({name: self.batch_row(name, batched[name], tensor, row)}, {name: tensor})

    def row(self, inputs: dict, row: int) -> dict:
        """Row `row` of every batched input, its padding cut off (padding at the tail, as tokenizers pad)."""
        single = {k: v[row : row + 1] if torch.is_tensor(v) and v.ndim > 0 else v for k, v in inputs.items()}
        mask = single.get("attention_mask")
        if mask is not None:
            length = int(mask.reshape(-1, mask.shape[-1]).sum(-1).max())
            single = {
                k: v[..., :length]
                if torch.is_tensor(v) and v.shape[-1] == mask.shape[-1] and v.ndim == mask.ndim
                else v
                for k, v in single.items()
            }
        return single

    def batch_row(self, name: str, batched: torch.Tensor, single: torch.Tensor, row: int) -> torch.Tensor:
        """The part of a batched output that belongs to `row`: dim 0 runs over the batch (in blocks, where a
        row gives several, as windows or choices); the other dims are cut to the single row's length."""
        rows = single.shape[0]
        assert batched.shape[0] == rows * self.batch_size, (name, tuple(batched.shape), tuple(single.shape))
        index = [slice(row * rows, (row + 1) * rows)] + [slice(0, size) for size in single.shape[1:]]
        if name.split(".")[0] in self.pairwise_outputs:
            index[1] = slice(row, row + 1)
        return batched[tuple(index)]

    @pytest.mark.parametrize("use_reentrant", [False, True], ids=["non-reentrant", "reentrant"])
    def test_gradient_checkpointing(self, model_class, use_reentrant):
        """gradient_checkpointing_enable (either of PyTorch's checkpoint implementations) sets every checkpointing
        layer, gives the same loss and gradients, and gradient_checkpointing_disable turns it off again."""
        if not model_class.supports_gradient_checkpointing:
            pytest.skip(f"{model_class.__name__} does not support gradient checkpointing")
        model = self.build(model_class).train()
        inputs = self.make_inputs(model_class)
        labels = self.make_labels(model_class, inputs)
        plain_loss = seeded(self.loss, model, inputs, labels)
        plain_loss.backward()
        plain = gradients(model)
        model.zero_grad(set_to_none=True)
        assert not model.is_gradient_checkpointing
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
        layers = [m for m in model.modules() if hasattr(m, "gradient_checkpointing")]
        assert layers and all(m.gradient_checkpointing for m in layers)
        checkpointed_loss = seeded(self.loss, model, inputs, labels)
        checkpointed_loss.backward()
        assert abs(plain_loss.item() - checkpointed_loss.item()) <= TOL
        assert_same_gradients(plain, gradients(model))
        model.gradient_checkpointing_disable()
        assert not model.is_gradient_checkpointing and not any(m.gradient_checkpointing for m in layers)

    # ======================================================================================================
    # outputs

    @pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
    def test_attention_outputs(self, model_class, attn_implementation, tmp_path):
        """`output_attentions` (argument or config) under every backend: one map per layer, the declared
        shapes, rows summing to 1 where nothing is masked, the reference's eager maps; without it none, and
        the same hidden states."""
        if not self.has_attentions:
            pytest.skip(f"{model_class.__name__} returns no attention maps")
        if attn_implementation == "sdpa" and not model_class._supports_sdpa:
            pytest.skip(f"{model_class.__name__} has no sdpa path")
        model = self.build(model_class)
        model.set_attn_implementation(attn_implementation)
        inputs = self.make_inputs(model_class)
        plain = flatten(self.forward(model, inputs))
        with torch.no_grad():
            output = self.forward(model, inputs, output_attentions=True)
        maps = self.attention_maps(output)
        assert [tuple(m.shape) for m in maps] == self.attention_shapes(model_class, inputs)
        for probabilities in maps:  # rows of probabilities; fully masked rows (padding) are zero
            sums = probabilities.sum(-1)
            assert (((sums - 1).abs() <= 1e-5) | (sums == 0)).all()
        assert_close(plain, flatten(output), names=[n for n in plain if "attentions" not in n])
        assert all("attentions" not in name for name in plain), [n for n in plain if "attentions" in n]
        if model_class not in self.output_flags_not_from_config:
            # transformers refuses to set `output_attentions` on a config that names sdpa: a model built with it
            by_config = model_class(self.get_config(model_class, output_attentions=True)).eval()
            by_config.load_state_dict(model.state_dict())
            by_config.set_attn_implementation(attn_implementation)
            with torch.no_grad():
                from_config = self.attention_maps(self.forward(by_config, inputs))
            assert len(from_config) == len(maps)
            for a, b in zip(maps, from_config):
                assert max_abs_diff(a, b) <= TOL
        if self.reference_classes.get(model_class) is not None:
            model.save_pretrained(tmp_path)
            reference = self.load_in_reference(model_class, tmp_path)
            reference.set_attn_implementation("eager")
            with torch.no_grad():
                expected = self.attention_maps(reference(**inputs, output_attentions=True))
            assert len(expected) == len(maps)
            for e, g in zip(expected, maps):
                assert e.shape == g.shape and max_abs_diff(e, g) <= TOL

    def attention_maps(self, output) -> list[torch.Tensor]:
        """Every attention map of an output, nested outputs included, in order."""
        return [t for name, t in flatten(output).items() if name.split(".")[-2:-1] == ["attentions"]]

    def test_hidden_states_output(self, model_class):
        """`output_hidden_states` (argument or config): the declared number and shapes; none without it."""
        if not self.takes_hidden_states(model_class):
            pytest.skip(f"{model_class.__name__} returns no hidden states")
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        expected = self.hidden_state_shapes(model_class, inputs)
        with torch.no_grad():
            plain = flatten(self.forward(model, inputs))
            results = [flatten(self.forward(model, inputs, output_hidden_states=True))]
            if model_class not in self.output_flags_not_from_config:
                model.config.output_hidden_states = True
                results.append(flatten(self.forward(model, inputs)))
        for got in results:
            shapes = {name: self.shapes_of(got, name) for name in expected}
            assert shapes == expected
        assert not any(self.shapes_of(plain, name) for name in expected)

    def test_retain_grad_hidden_states_attentions(self, model_class):
        """The first hidden state and attention map returned are part of the graph: gradients reach them."""
        if not self.takes_hidden_states(model_class):
            pytest.skip(f"{model_class.__name__} returns no hidden states")
        model = self.build(model_class)
        model.set_attn_implementation("eager")
        output = self.forward(model, self.make_inputs(model_class), output_hidden_states=True, output_attentions=True)
        tensors = flatten(output)
        first = [tensors[name] for name in tensors if name.rsplit(".", 1)[-1] == "0" and "attentions" in name]
        first += [tensors[name] for name in tensors if name.endswith("hidden_states.0")]
        assert len(first) >= 2, sorted(tensors)
        for tensor in first:
            tensor.retain_grad()
        probe_loss(output).backward()
        assert all(tensor.grad is not None for tensor in first)

    def shapes_of(self, tensors: dict, name: str) -> list[tuple]:
        return [tuple(t.shape) for key, t in tensors.items() if key.rsplit(".", 1)[0] == name]

    def test_inputs_embeds_matches_input_ids(self, model_class):
        if not self.takes(model_class, "input_ids"):
            pytest.skip(f"{model_class.__name__} takes no input_ids")
        if not self.takes(model_class, "inputs_embeds"):
            reference_class = self.reference_classes.get(model_class)
            if reference_class is None or "inputs_embeds" not in inspect.signature(reference_class.forward).parameters:
                pytest.skip(f"{model_class.__name__} takes no inputs_embeds, nor does the reference")
            pytest.fail(f"{model_class.__name__}.forward takes no inputs_embeds; {reference_class.__name__}'s does")
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        embeds = dict(inputs)
        with torch.no_grad():
            embeds["inputs_embeds"] = model.get_input_embeddings()(embeds.pop("input_ids"))
        expected, got = self.outputs(model, inputs), self.outputs(model, embeds)
        mask = inputs.get("attention_mask")
        if mask is not None:  # padding may take other positions from embeddings than from ids: real tokens only
            expected, got = self.real_tokens(expected, mask), self.real_tokens(got, mask)
        assert_close(expected, got)

    def real_tokens(self, tensors: dict, mask: torch.Tensor) -> dict:
        """Per-token outputs at the unpadded positions; other outputs as they are."""
        flat_mask = mask.reshape(-1, mask.shape[-1]).bool()
        kept = {}
        for name, tensor in tensors.items():
            if tensor.ndim >= 2 and tuple(tensor.shape[:2]) == tuple(flat_mask.shape):
                kept[name] = tensor[flat_mask]
            elif tensor.ndim >= 2 and tuple(tensor.shape[:2]) == tuple(mask.shape[:2]) and mask.ndim == 2:
                kept[name] = tensor[mask.bool()]
            else:
                kept[name] = tensor
        return kept

    def test_resize_token_embeddings(self, model_class):
        """Grown by 10 rows the model takes the new ids (tied output embeddings follow); shrunk back, the
        original outputs."""
        if not self.takes(model_class, "input_ids"):
            pytest.skip(f"{model_class.__name__} takes no input_ids")
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        expected = self.outputs(model, inputs)
        vocab = model.config.get_text_config().vocab_size
        model.resize_token_embeddings(vocab + 10)
        assert model.get_input_embeddings().weight.shape[0] == vocab + 10
        assert model.config.get_text_config().vocab_size == vocab + 10
        output_embeddings = model.get_output_embeddings()
        if output_embeddings is not None:
            assert output_embeddings.weight.shape[0] == vocab + 10
            assert output_embeddings.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        new_ids = dict(inputs, input_ids=inputs["input_ids"].clone())
        new_ids["input_ids"][..., 1] = vocab + 5
        assert all(torch.isfinite(t).all() for t in self.outputs(model, new_ids).values() if t.is_floating_point())
        model.resize_token_embeddings(vocab)
        assert_close(expected, self.outputs(model, inputs), tol=0.0)

    def test_model_get_set_embeddings(self, model_class):
        """get_input_embeddings gives the first layer (an Embedding for text, the patch projection for images),
        set_input_embeddings replaces a text model's; get_output_embeddings is a Linear or None."""
        model = self.build(model_class)
        try:
            embeddings = model.get_input_embeddings()
        except NotImplementedError:
            if self.reference_classes.get(model_class) is not None:  # then the reference has none either
                with pytest.raises((NotImplementedError, AttributeError)):
                    self.build_reference(model_class).get_input_embeddings()
            pytest.skip(f"{model_class.__name__} has no input embeddings")
        assert isinstance(embeddings, torch.nn.Module)
        if self.takes(model_class, "input_ids"):  # as in transformers, text models only
            replacement = torch.nn.Embedding(10, embeddings.embedding_dim)
            model.set_input_embeddings(replacement)
            assert model.get_input_embeddings() is replacement
        output_embeddings = model.get_output_embeddings()
        assert output_embeddings is None or isinstance(output_embeddings, torch.nn.Linear)

    def test_model_outputs_equivalence(self, model_class):
        """`return_dict=False` gives the output's fields as a tuple, the same tensors in the same order (with
        hidden states and attention maps too)."""
        if not self.takes(model_class, "kwargs") and not self.takes(model_class, "return_dict"):
            pytest.skip(f"{model_class.__name__} takes no return_dict")
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        flags = {"output_hidden_states": True, "output_attentions": True} if self.has_attentions else {}
        if flags:
            model.set_attn_implementation("eager")
        with torch.no_grad():
            as_dict = self.forward(model, inputs, **flags)
            as_tuple = self.forward(model, inputs, return_dict=False, **flags)
        assert isinstance(as_tuple, tuple)
        assert_close(flatten(as_dict.to_tuple()), flatten(as_tuple), tol=0.0)
        assert len(flatten(as_tuple)) == len(flatten(as_dict))

    def test_forward_signature(self, model_class):
        """The main input comes first, as pipelines and Trainer pass it; **kwargs are typed."""
        parameters = inspect.signature(model_class.forward).parameters
        assert list(parameters)[1] == model_class.main_input_name, list(parameters)
        # **kwargs typed as transformers' models type them, so that type checkers and docs know what they take
        kwargs = parameters.get("kwargs")
        assert kwargs is None or "TransformersKwargs" in str(kwargs.annotation), kwargs

    def test_forward_takes_the_reference_arguments(self, model_class):
        """Every input the reference's forward names, ours names too, in the same order (not only through
        **kwargs, which would drop it silently)."""
        self.needs_reference(model_class)
        reference_class = self.reference_classes[model_class]
        flags = {"self", "kwargs", "return_dict", "output_attentions", "output_hidden_states"}
        theirs = [name for name in inspect.signature(reference_class.forward).parameters if name not in flags]
        ours = list(inspect.signature(model_class.forward).parameters)
        assert not set(theirs) - set(ours), f"missing: {sorted(set(theirs) - set(ours))}"
        # in the same order, so that positional calls written for transformers mean the same
        assert [name for name in ours if name in theirs] == theirs, (ours, theirs)

    # ======================================================================================================
    # training

    def test_training(self, model_class):
        """With labels a loss comes back, and every parameter gets a gradient (none is dead)."""
        model = self.build(model_class).train()
        inputs = self.make_inputs(model_class)
        labels = self.make_labels(model_class, inputs)
        output = seeded(self.forward, model, inputs, **labels)
        if labels:
            assert output.loss is not None and output.loss.ndim == 0 and torch.isfinite(output.loss)
        loss = output.loss if getattr(output, "loss", None) is not None else probe_loss(output)
        loss.backward()
        unused = self.unused_parameters.get(model_class.__name__, {})
        dead = [
            name
            for name, p in model.named_parameters()
            if (p.grad is None or not p.grad.abs().sum() > 0) and not name.startswith(tuple(unused))
        ]
        assert not dead, f"parameters without a gradient: {dead}"

    def test_problem_types(self, model_class):
        """A classification head's loss follows `config.problem_type`, as transformers' heads do."""
        if "labels" not in inspect.signature(model_class.forward).parameters or not self.is_sequence_classifier(
            model_class
        ):
            pytest.skip(f"{model_class.__name__} is not a sequence classifier")
        num_labels = self.get_config(model_class).num_labels
        batch = self.batch_size
        cases = {
            "single_label_classification": (torch.arange(batch) % num_labels, F.cross_entropy),
            "multi_label_classification": (
                (torch.rand(batch, num_labels) > 0.5).float(),
                F.binary_cross_entropy_with_logits,
            ),
            "regression": (torch.randn(batch, num_labels), F.mse_loss),
        }
        inputs = self.make_inputs(model_class)
        for problem_type, (labels, loss_function) in cases.items():
            # set, or (single- and multi-label) inferred from the labels' dtype
            for given in {problem_type, None} - ({None} if problem_type == "regression" else set()):
                model = self.build(model_class, problem_type=given)
                with torch.no_grad():
                    output = self.forward(model, inputs, labels=labels)
                loss = loss_function(output.logits, labels).item()
                assert abs(output.loss.item() - loss) <= TOL, (problem_type, given)

    def test_load_with_mismatched_head(self, model_class, tmp_path):
        """A classifier saved with 3 labels loads with 5 only with ignore_mismatched_sizes (a new head, the body
        loaded), as transformers' test_load_with_mismatched_shapes."""
        if not self.is_sequence_classifier(model_class):
            pytest.skip(f"{model_class.__name__} is not a sequence classifier")
        model = self.build(model_class, num_labels=3)
        model.save_pretrained(tmp_path)
        with pytest.raises(RuntimeError, match=r"size mismatch|mismatched"):
            model_class.from_pretrained(tmp_path, num_labels=5)
        loaded, info = model_class.from_pretrained(
            tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
        )
        assert info["mismatched_keys"] and not info["missing_keys"] and not info["unexpected_keys"], info
        inputs = self.make_inputs(model_class)
        assert self.outputs(loaded.eval(), inputs)["logits"].shape == (self.batch_size, 5)
        mismatched = {key for key, *_ in info["mismatched_keys"]}
        state = model.state_dict()
        for name, tensor in loaded.state_dict().items():
            if name not in mismatched:
                assert torch.equal(tensor, state[name]), name

    def is_sequence_classifier(self, model_class) -> bool:
        return model_class.__name__.endswith(("ForSequenceClassification", "ForImageClassification"))

    def test_ignored_labels(self, model_class):
        """Labels of -100 are left out of a cross-entropy loss (PyTorch's ignore_index, as in transformers): token
        labels, and single-label classification labels."""
        model = self.build(model_class)
        inputs = self.make_inputs(model_class)
        if model_class.__name__.endswith(("ForTokenClassification", "ForMaskedLM")):
            num_classes = model.config.vocab_size if "MaskedLM" in model_class.__name__ else model.config.num_labels
            labels = torch.randint(0, num_classes, inputs["input_ids"].shape)
            labels[:, ::2] = -100
        elif self.is_sequence_classifier(model_class):
            labels = torch.arange(self.batch_size) % model.config.num_labels
            labels[1] = -100
        else:
            pytest.skip(f"{model_class.__name__} takes no class labels")
        with torch.no_grad():
            output = self.forward(model, inputs, labels=labels)
        expected = F.cross_entropy(output.logits.flatten(0, -2), labels.flatten(), ignore_index=-100)
        assert abs(output.loss.item() - expected.item()) <= TOL

    # ======================================================================================================
    # PEFT

    def test_peft_lora(self, model_class, tmp_path):
        """LoRA on every linear layer: the adapter changes the outputs once its B weights are non-zero,
        merge_and_unload gives the adapted outputs, and the saved adapter reloads onto a fresh copy of the base
        model with the same outputs."""
        peft = pytest.importorskip("peft")
        inputs = self.make_inputs(model_class)
        base = self.build(model_class)
        base.save_pretrained(tmp_path / "base")
        expected = self.outputs(base, inputs)
        config = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
        adapted = peft.get_peft_model(base, config).eval()
        assert_close(expected, self.outputs(adapted, inputs))  # B = 0: the base model (through unfused linears)
        lora_b = [p for name, p in adapted.named_parameters() if "lora_B" in name]
        assert lora_b
        with torch.no_grad():
            for parameter in lora_b:
                parameter.normal_(0.0, 0.1)
        with_adapter = self.outputs(adapted, inputs)
        changed = {n for n in with_adapter if max_abs_diff(with_adapter[n], expected[n]) > 1e-4}
        assert changed, "the adapter changes no output"
        adapted.save_pretrained(tmp_path / "adapter")
        fresh = model_class.from_pretrained(tmp_path / "base").eval()
        reloaded = peft.PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
        assert_close(with_adapter, self.outputs(reloaded, inputs))
        merged = adapted.merge_and_unload().eval()
        assert not any("lora" in name for name, _ in merged.named_parameters())
        assert_close(with_adapter, self.outputs(merged, inputs))
