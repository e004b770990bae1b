"""Configs: every value is checked when a config is built, whichever way it arrives (constructor, `attribute_map`
alias, config.json, `from_pretrained` / `from_dict` overrides, another architecture's folder); the defaults are
valid for any vocabulary size; transformers' ConfigTester checks hold for every config; and a config.json key that
no setting knows is named in a warning, while the keys transformers writes are not."""

import copy
import dataclasses
import json
import logging
import math

import pytest
import torch
import transformers
from conftest import TINY_VIT
from huggingface_hub.errors import StrictDataclassFieldValidationError

import hubformers

TINY_SWIN = dict(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2, 2], num_heads=[2, 2, 4], window_size=4)
TINY_TEXT = dict(
    vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=16, bos_token_id=998, eos_token_id=999, projection_dim=24,
)  # fmt: skip
TINY_VISION = dict(
    hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, image_size=32, patch_size=8
)
TINY_CLIP = dict(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=24)
TINY_VAE = dict(architecture="conv", num_channels=3, image_size=16, block_out_channels=[8, 16], norm_num_groups=4)
TINY_LONGFORMER = dict(
    vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    attention_window=[4, 8], max_position_embeddings=80,
)  # fmt: skip

TINY = {
    hubformers.ViTConfig: TINY_VIT,
    hubformers.SwinConfig: TINY_SWIN,
    hubformers.CLIPTextConfig: TINY_TEXT,
    hubformers.CLIPVisionConfig: TINY_VISION,
    hubformers.CLIPConfig: TINY_CLIP,
    hubformers.VAEConfig: TINY_VAE,
    hubformers.LongformerConfig: TINY_LONGFORMER,
}
CONFIGS = list(TINY)
TEXT_CONFIGS = [hubformers.CLIPTextConfig, hubformers.LongformerConfig]

# One invalid value per config: an override that must be refused however it arrives.
INVALID = {
    hubformers.ViTConfig: ({"hidden_size": 30}, r"`hidden_size` \(30\) must be divisible"),
    hubformers.SwinConfig: ({"num_heads": [3, 2, 4]}, r"must be divisible by `num_heads\[0\]` \(3\)"),
    hubformers.CLIPTextConfig: ({"eos_token_id": 1000}, r"`eos_token_id` must be in \[0, 1000\)"),
    hubformers.CLIPVisionConfig: ({"image_size": [32]}, "`image_size` must be an int or a \\(height, width\\) pair"),
    hubformers.CLIPConfig: ({"logit_scale_init_value": math.nan}, "`logit_scale_init_value` must be a finite"),
    hubformers.VAEConfig: ({"beta": -1.0}, "`beta` must be a finite number >= 0"),
    hubformers.LongformerConfig: ({"attention_window": [7, 8]}, "`attention_window` of layer 0 must be even"),
}


def ids(config_class) -> str:
    return config_class.__name__


@pytest.fixture
def warnings_of(caplog):
    """The warnings hubformers' configs log while the test runs (transformers' logger of the module)."""
    caplog.set_level(logging.WARNING, logger="hubformers")
    return lambda: [r.getMessage() for r in caplog.records if r.name.startswith("hubformers")]


def write_config(folder, config_dict: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_dict))


# --- attribute_map aliases ------------------------------------------------------------------------------------


def test_every_alias_names_a_setting_of_its_config():
    for config_class in CONFIGS:
        config = config_class(**TINY[config_class])
        for alias, name in config_class.attribute_map.items():
            assert getattr(config, alias) == getattr(config, name), (config_class, alias)


def test_swin_alias_is_checked_like_its_field():
    """`num_attention_heads` is `num_heads`: the same value is accepted or refused the same way."""
    without_heads = {key: value for key, value in TINY_SWIN.items() if key != "num_heads"}
    config = hubformers.SwinConfig(**without_heads, num_attention_heads=[4, 4, 8])
    assert config.num_heads == [4, 4, 8] and config.num_attention_heads == [4, 4, 8]
    with pytest.raises(ValueError, match=r"`stage 1 width` \(16\) must be divisible by `num_heads\[0\]` \(3\)"):
        hubformers.SwinConfig(**TINY_SWIN, num_attention_heads=[3, 2, 4])
    for name in ("num_heads", "num_attention_heads"):  # an int where one head count per stage belongs
        with pytest.raises(StrictDataclassFieldValidationError, match="num_heads"):
            hubformers.SwinConfig(**{**TINY_SWIN, name: 4})


def test_swin_derived_sizes_must_agree():
    """`num_hidden_layers` (`num_layers`) and `hidden_size` follow from depths and embed_dim; every save writes them,
    so a value that agrees loads and one that does not (another architecture's, or a hope to set them) is refused."""
    assert hubformers.SwinConfig(**TINY_SWIN, num_hidden_layers=3, hidden_size=64).num_hidden_layers == 3
    with pytest.raises(
        ValueError, match=r"`num_layers` \(`num_hidden_layers`\) of a Swin follows from `depths`.*got 2"
    ):
        hubformers.SwinConfig(**TINY_SWIN, num_hidden_layers=2)
    with pytest.raises(ValueError, match=r"`hidden_size` of a Swin follows from .*64 here.*got 37"):
        hubformers.SwinConfig(**TINY_SWIN, hidden_size=37)


# --- another architecture's config ----------------------------------------------------------------------------


def test_another_architectures_folder_warns_and_is_checked(tmp_path, warnings_of):
    """transformers warns on a model_type mismatch and builds the config anyway; ours warns as well and then checks
    the values as its own: a ViT's `num_attention_heads` is no Swin head list."""
    hubformers.ViTConfig(**TINY_VIT).save_pretrained(tmp_path)
    with pytest.raises(StrictDataclassFieldValidationError, match="num_heads"):
        hubformers.SwinConfig.from_pretrained(tmp_path)
    assert any("model_type 'hubformers_vit' is being loaded as SwinConfig" in m for m in warnings_of())
    with pytest.raises(StrictDataclassFieldValidationError, match="num_heads"):
        hubformers.SwinConfig.from_dict(transformers.ViTConfig(**TINY_VIT).to_dict())


def test_another_architectures_dict_names_what_does_not_fit(warnings_of):
    """The names both share are read and checked (a Swin's final width with ViT's default 12 heads is refused);
    the names only the Swin has are named in a warning."""
    swin = hubformers.SwinConfig(**TINY_SWIN).to_dict()
    with pytest.raises(ValueError, match=r"`hidden_size` \(64\) must be divisible by `num_attention_heads` \(12\)"):
        hubformers.ViTConfig.from_dict(swin)
    config = hubformers.ViTConfig.from_dict(swin, num_attention_heads=4)
    assert (config.hidden_size, config.patch_size, config.num_attention_heads) == (64, 2, 4)
    messages = " ".join(warnings_of())
    assert "model_type 'hubformers_swin' is being loaded as ViTConfig" in messages
    assert "`depths`" in messages and "`embed_dim`" in messages and "`window_size`" in messages


# --- overrides of from_pretrained / from_dict -----------------------------------------------------------------


@pytest.mark.parametrize("config_class", CONFIGS, ids=ids)
def test_overrides_are_checked_like_constructor_arguments(config_class, tmp_path):
    overrides, message = INVALID[config_class]
    with pytest.raises(ValueError, match=message):
        config_class(**{**TINY[config_class], **overrides})
    config_class(**TINY[config_class]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=message):
        config_class.from_pretrained(tmp_path, **overrides)
    with pytest.raises(ValueError, match=message):
        config_class.from_dict(config_class(**TINY[config_class]).to_dict(), **overrides)


def test_overrides_are_normalised_like_constructor_arguments(tmp_path):
    hubformers.LongformerConfig(**TINY_LONGFORMER).save_pretrained(tmp_path)
    config, unused = hubformers.LongformerConfig.from_pretrained(
        tmp_path, attention_window=16, num_labels=4, not_a_setting=1, return_unused_kwargs=True
    )
    assert config.attention_window == [16, 16] and config.num_labels == 4 and unused == {"not_a_setting": 1}
    with pytest.raises(ValueError, match=r"`attention_window` of layer 0 \(80\) is longer than any input"):
        hubformers.LongformerConfig.from_pretrained(tmp_path, attention_window=80)


def test_sub_config_override_updates_the_loaded_tower(tmp_path):
    hubformers.CLIPConfig(**TINY_CLIP).save_pretrained(tmp_path)
    config = hubformers.CLIPConfig.from_pretrained(tmp_path, text_config={"vocab_size": 2000})
    assert config.text_config.vocab_size == 2000 and config.text_config.hidden_size == TINY_TEXT["hidden_size"]
    with pytest.raises(ValueError, match=r"`eos_token_id` must be in \[0, 500\)"):
        hubformers.CLIPConfig.from_pretrained(tmp_path, text_config={"vocab_size": 500})


def test_model_from_pretrained_overrides_are_checked(tmp_path):
    hubformers.LongformerModel(hubformers.LongformerConfig(**TINY_LONGFORMER)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="`attention_window` of layer 0 must be even"):
        hubformers.LongformerModel.from_pretrained(tmp_path, attention_window=[7, 8])
    model = hubformers.LongformerModel.from_pretrained(tmp_path, attention_window=[8, 8])
    assert model.config.attention_window == [8, 8]


def test_assignment_is_checked_when_the_config_loads_again(tmp_path):
    """Assignment after construction is not checked (as in transformers: changing two fields that must agree
    passes through a state where they do not); the saved config is checked when it is loaded."""
    config = hubformers.LongformerConfig(**TINY_LONGFORMER)
    config.attention_window = [7, 8]
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="`attention_window` of layer 0 must be even"):
        hubformers.LongformerConfig.from_pretrained(tmp_path)


# --- values refused when a config is built --------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_class, overrides, message",
    [
        (hubformers.ViTConfig, dict(initializer_range=0), "`initializer_range` must be positive, got 0"),
        (hubformers.SwinConfig, dict(initializer_range=-0.02), "`initializer_range` must be positive"),
        (hubformers.CLIPTextConfig, dict(initializer_range=math.nan), "`initializer_range` must be positive"),
        (hubformers.CLIPVisionConfig, dict(initializer_factor=0.0), "`initializer_factor` must be positive"),
        (hubformers.VAEConfig, dict(initializer_range=0.0), "`initializer_range` must be positive"),
        (hubformers.LongformerConfig, dict(initializer_range=math.nan), "`initializer_range` must be positive"),
        (hubformers.ViTConfig, dict(image_size=[32, 32, 3]), r"`image_size` must be .* pair, got 3 values"),
        (hubformers.ViTConfig, dict(patch_size=[8]), r"`patch_size` must be .* pair, got 1 values"),
        (hubformers.SwinConfig, dict(image_size=[]), r"`image_size` must be .* pair, got 0 values"),
        (hubformers.CLIPVisionConfig, dict(patch_size=[8, 8, 8]), r"`patch_size` must be .* pair"),
        (hubformers.CLIPTextConfig, dict(pad_token_id=1000), r"`pad_token_id` must be in \[0, 1000\)"),
        (hubformers.CLIPTextConfig, dict(pad_token_id=-1), r"`pad_token_id` must be in \[0, 1000\)"),
        (hubformers.CLIPTextConfig, dict(bos_token_id=1000), r"`bos_token_id` must be in \[0, 1000\)"),
        (hubformers.LongformerConfig, dict(pad_token_id=100), r"`pad_token_id` must be in \[0, 100\)"),
        (hubformers.LongformerConfig, dict(pad_token_id=-1), r"`pad_token_id` must be in \[0, 100\)"),
        (hubformers.LongformerConfig, dict(sep_token_id=100), r"`sep_token_id` must be in \[0, 100\)"),
        (hubformers.LongformerConfig, dict(eos_token_id=[2, 100]), r"`eos_token_id` must be in \[0, 100\)"),
        (hubformers.ViTConfig, dict(intermediate_size=0), "`intermediate_size` must be positive, got 0"),
        (hubformers.CLIPTextConfig, dict(intermediate_size=0), "`intermediate_size` must be positive, got 0"),
        (hubformers.LongformerConfig, dict(intermediate_size=-4), "`intermediate_size` must be positive"),
        (hubformers.SwinConfig, dict(mlp_ratio=0.05), r"`mlp_ratio` \* `embed_dim` .* must be >= 1, got 0.05 \* 16"),
        (hubformers.VAEConfig, dict(block_out_channels=[]), r"`block_out_channels` must be positive, got \[\]"),
        (hubformers.SwinConfig, dict(depths=[], num_heads=[]), r"`depths` must be positive, got \[\]"),
        (hubformers.LongformerConfig, dict(attention_window=[]), r"one value per layer \(2\), got 0"),
        (hubformers.CLIPConfig, dict(logit_scale_init_value=math.inf), "`logit_scale_init_value` must be a finite"),
        (hubformers.CLIPConfig, dict(logit_scale_max=math.inf), "`logit_scale_max` must be positive, got inf"),
        (hubformers.LongformerConfig, dict(attention_window=[4, 80]), r"layer 1 \(80\) is longer than any input"),
        (hubformers.VAEConfig, dict(shift_factor=math.nan), "`shift_factor` must be a finite number"),
    ],
)
def test_bad_values_are_refused(config_class, overrides, message):
    with pytest.raises(ValueError, match=message):
        config_class(**{**TINY[config_class], **overrides})


def test_attention_window_may_span_the_whole_position_table():
    """RoBERTa's positions start after `pad_token_id`, so 80 rows with pad_token_id=1 hold 78 tokens; padding to a
    multiple of the window reuses the padding row, so a window of all 78 fits."""
    assert hubformers.LongformerConfig(**{**TINY_LONGFORMER, "attention_window": 78}).attention_window == [78, 78]
    with pytest.raises(ValueError, match=r"max_position_embeddings - pad_token_id - 1 = 76 tokens"):
        hubformers.LongformerConfig(**{**TINY_LONGFORMER, "attention_window": 78, "pad_token_id": 3})


def float_settings(config_class, lists: bool = False) -> list[str]:
    """The fields of `config_class` that hold a float, or with `lists` a list of floats (its own fields, not
    PreTrainedConfig's)."""
    inherited = {f.name for f in dataclasses.fields(transformers.PreTrainedConfig)}
    fields = [f for f in dataclasses.fields(config_class) if f.name not in inherited and "float" in str(f.type)]
    return sorted(f.name for f in fields if str(f.type).startswith("list[float]") == lists)


@pytest.mark.parametrize("config_class", CONFIGS, ids=ids)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_float_setting_refuses_nan_and_infinity(config_class, value):
    names = float_settings(config_class)
    assert names, config_class
    for name in names:
        with pytest.raises(ValueError, match=f"`{name}` must"):
            config_class(**{**TINY[config_class], name: value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_list_of_floats_refuses_nan_and_infinity(value):
    config = hubformers.VAEConfig(architecture="conv", block_out_channels=[8, 16], norm_num_groups=4)
    names = float_settings(hubformers.VAEConfig, lists=True)
    assert names == ["latents_mean", "latents_std"]
    for name in names:
        with pytest.raises(ValueError, match=f"`{name}"):
            hubformers.VAEConfig(**{**config.to_diff_dict(), name: [value] + [0.5] * (config.latent_channels - 1)})


# --- defaults valid for any vocabulary size -------------------------------------------------------------------


@pytest.mark.parametrize("vocab_size", [1, 2, 3, 99, 49408])
def test_clip_text_defaults_fit_any_vocabulary(vocab_size, warnings_of):
    """CLIP's vocabulary ends with start-of-text and end-of-text, so the default special tokens are the last two
    ids (49406, 49407 for CLIP's own vocabulary, where the pooled position stays as before)."""
    config = hubformers.CLIPTextConfig(vocab_size=vocab_size)
    assert config.eos_token_id == vocab_size - 1
    assert config.bos_token_id == (vocab_size - 2 if vocab_size >= 2 else None)
    assert config.pad_token_id == (1 if vocab_size > 1 else None)
    assert hubformers.CLIPConfig(text_config={"vocab_size": vocab_size}).text_config.eos_token_id == vocab_size - 1
    assert not warnings_of()


def test_clip_text_keeps_the_ids_it_is_given(tmp_path):
    assert hubformers.CLIPTextConfig(vocab_size=99, eos_token_id=2).eos_token_id == 2
    assert hubformers.CLIPTextConfig(vocab_size=49408, eos_token_id=2).eos_token_id == 49407  # openai's legacy 2
    config = hubformers.CLIPTextConfig(**TINY_TEXT)
    config.save_pretrained(tmp_path)
    assert transformers.CLIPTextConfig.from_pretrained(tmp_path).eos_token_id == 999  # saved for transformers too
    with pytest.raises(ValueError, match=r"`eos_token_id` must be in \[0, 99\)"):
        hubformers.CLIPTextConfig(vocab_size=99, eos_token_id=49407)


@pytest.mark.parametrize("vocab_size", [1, 2, 3, 99, 50265])
def test_longformer_defaults_fit_any_vocabulary(vocab_size):
    config = hubformers.LongformerConfig(vocab_size=vocab_size)
    roberta = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "sep_token_id": 2}
    for name, roberta_id in roberta.items():
        fallback = vocab_size - 1 if name == "pad_token_id" else None
        assert getattr(config, name) == (roberta_id if roberta_id < vocab_size else fallback), name


# --- transformers' ConfigTester checks ------------------------------------------------------------------------

# transformers' ConfigTester builds each config from a few keyword arguments (the rest default)
PARTIAL = {
    hubformers.ViTConfig: dict(hidden_size=36),
    hubformers.SwinConfig: dict(embed_dim=36),
    hubformers.CLIPTextConfig: dict(hidden_size=40),
    hubformers.CLIPVisionConfig: dict(hidden_size=36),
    hubformers.CLIPConfig: dict(projection_dim=40),
    hubformers.VAEConfig: dict(latent_size=7),
    hubformers.LongformerConfig: dict(hidden_size=36),
}
# ConfigTester's common properties, with values these configs accept (it uses 0, 1, 2, 3, which checks refuse)
COMMON_PROPERTIES = {"hidden_size": 48, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 3}
SWIN_PROPERTIES = {"hidden_size": 768, "num_attention_heads": [1, 2, 4, 8], "num_hidden_layers": 4}
# transformers' config_common_kwargs, less the generation settings transformers 5 drops from configs
CONFIG_COMMON_KWARGS = {
    "return_dict": False, "output_hidden_states": True, "output_attentions": True, "dtype": "float16",
    "tie_word_embeddings": False, "is_decoder": True, "cross_attention_hidden_size": 128, "add_cross_attention": True,
    "tie_encoder_decoder": True, "chunk_size_feed_forward": 5, "architectures": ["BertModel"],
    "finetuning_task": "translation", "id2label": {0: "label"}, "label2id": {"label": "0"},
    "tokenizer_class": "BertTokenizerFast", "prefix": "prefix", "bos_token_id": 6, "pad_token_id": 7,
    "eos_token_id": 8, "sep_token_id": 9, "decoder_start_token_id": 10,
    "task_specific_params": {"translation": "some_params"}, "problem_type": "regression",
}  # fmt: skip


def common_properties(config_class) -> dict:
    if config_class is hubformers.SwinConfig:
        return SWIN_PROPERTIES
    if config_class is hubformers.VAEConfig:
        return {"hidden_size": 48}
    if config_class.sub_configs:
        return {}
    properties = dict(COMMON_PROPERTIES)
    if config_class not in TEXT_CONFIGS:
        del properties["vocab_size"]
    return properties


@pytest.mark.parametrize("config_class", CONFIGS, ids=ids)
def test_config_tester_common_properties(config_class):
    config = config_class(**PARTIAL[config_class])
    for name, value in common_properties(config_class).items():
        setattr(config, name, value)
        assert getattr(config, name) == value, name
        assert getattr(config_class(**{name: value}), name) == value, name


@pytest.mark.parametrize("config_class", CONFIGS, ids=ids)
def test_config_tester_serialisation_round_trips(config_class, tmp_path):
    kwargs = PARTIAL[config_class]
    config = config_class(**kwargs)
    written = json.loads(config.to_json_string())
    assert all(written[key] == value for key, value in kwargs.items())
    config.to_json_file(tmp_path / "config.json")
    assert config_class.from_json_file(tmp_path / "config.json").to_dict() == config.to_dict()
    config.save_pretrained(tmp_path / "saved")
    assert config_class.from_pretrained(tmp_path / "saved").to_dict() == config.to_dict()
    config.save_pretrained(tmp_path / "nested" / "test")
    assert config_class.from_pretrained(tmp_path / "nested", subfolder="test").to_dict() == config.to_dict()
    with pytest.raises(OSError):
        config_class.from_pretrained(f".{tmp_path}")


@pytest.mark.parametrize("config_class", CONFIGS, ids=ids)
def test_config_tester_num_labels_and_defaults(config_class):
    config = config_class(**PARTIAL[config_class], num_labels=5)
    assert len(config.id2label) == 5 and len(config.label2id) == 5
    config.num_labels = 3
    assert len(config.id2label) == 3 and len(config.label2id) == 3
    assert config_class() is not None


@pytest.mark.parametrize("config_class", [c for c in CONFIGS if not c.sub_configs], ids=ids)
def test_config_tester_common_kwargs(config_class, warnings_of):
    """Every common keyword that transformers' config of the same architecture keeps, ours keeps (the oracle:
    transformers' own config class; the VAE, which has none, against transformers' PreTrainedConfig)."""
    reference_class = config_class.transformers_config or transformers.PreTrainedConfig
    reference = reference_class(**copy.deepcopy(CONFIG_COMMON_KWARGS))
    config = config_class(**copy.deepcopy(CONFIG_COMMON_KWARGS))
    assert config.dtype == reference.dtype == torch.float16
    for key, value in CONFIG_COMMON_KWARGS.items():
        if key != "dtype" and getattr(reference, key, None) == value:
            assert getattr(config, key) == value, key
    assert not [m for m in warnings_of() if "has no setting" in m]


def test_config_tester_composite_and_custom_kwargs(tmp_path):
    """Each tower loads from the joint folder as it is inside the joint config, saves and loads again; a tower
    override updates only the given keys of the loaded tower."""
    config = hubformers.CLIPConfig(**TINY_CLIP)
    config.save_pretrained(tmp_path / "joint")
    joint = hubformers.CLIPConfig.from_pretrained(tmp_path / "joint")
    joint_dict = config.to_dict()
    for key, sub_class in joint.sub_configs.items():
        tower = sub_class.from_pretrained(tmp_path / "joint")
        tower_dict = tower.to_dict()
        tower_dict.pop("transformers_version")
        assert tower_dict == joint_dict[key]
        assert isinstance(tower, type(getattr(joint, key)))
        tower.save_pretrained(tmp_path / key)
        assert sub_class.from_pretrained(tmp_path / key).to_dict() == tower.to_dict()
    reloaded = hubformers.CLIPConfig.from_pretrained(tmp_path / "joint", text_config={"vocab_size": 2000})
    expected = config.text_config.to_dict() | {"vocab_size": 2000}
    assert reloaded.text_config.to_dict() == expected


# --- keys no setting knows ------------------------------------------------------------------------------------


def test_a_misspelt_key_is_named_in_a_warning(tmp_path, warnings_of):
    config_dict = hubformers.ViTConfig(**TINY_VIT).to_dict()
    write_config(tmp_path, {**config_dict, "num_hiden_layers": 1})
    config = hubformers.ViTConfig.from_pretrained(tmp_path)
    assert config.num_hidden_layers == TINY_VIT["num_hidden_layers"]
    assert [m for m in warnings_of() if "`num_hiden_layers`" in m and "ViTConfig has no setting" in m]


# What transformers 4 wrote into every config.json besides the architecture's own keys (openai's CLIP towers on
# the Hub still carry them): its common attributes, and generation settings, which transformers 5 drops.
TRANSFORMERS_4_KEYS = {
    "_commit_hash": None, "_attn_implementation_autoset": True, "torchscript": False, "use_bfloat16": False,
    "tf_legacy_loss": False, "pruned_heads": {}, "torch_dtype": "float32", "gradient_checkpointing": False,
    "is_decoder": False, "add_cross_attention": False, "tie_encoder_decoder": False, "cross_attention_hidden_size": None,
    "finetuning_task": None, "tokenizer_class": None, "prefix": None, "task_specific_params": None,
    "decoder_start_token_id": None, "max_length": 20, "min_length": 0, "do_sample": False, "num_beams": 1,
    "num_beam_groups": 1, "diversity_penalty": 0.0, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0,
    "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None,
    "num_return_sequences": 1, "output_scores": False, "return_dict_in_generate": False, "use_cache": True,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "remove_invalid_values": False,
    "exponential_decay_length_penalty": None, "suppress_tokens": None, "begin_suppress_tokens": None,
}  # fmt: skip


@pytest.mark.parametrize("config_class", [c for c in CONFIGS if not c.sub_configs], ids=ids)
def test_keys_of_transformers_4_configs_raise_no_warning(config_class, tmp_path, warnings_of):
    write_config(tmp_path, {**config_class(**TINY[config_class]).to_dict(), **TRANSFORMERS_4_KEYS})
    config_class.from_pretrained(tmp_path)
    assert not warnings_of()


def test_clip_tower_dicts_of_early_transformers_configs(tmp_path, warnings_of):
    """Early transformers versions wrote `text_config_dict` / `vision_config_dict` (null in openai's configs):
    a null one is no unknown key, and a filled one gives the tower, as in transformers."""
    config_dict = hubformers.CLIPConfig(**TINY_CLIP).to_dict()
    write_config(tmp_path / "null", {**config_dict, "text_config_dict": None, "vision_config_dict": None})
    assert hubformers.CLIPConfig.from_pretrained(tmp_path / "null").to_dict() == config_dict
    assert not warnings_of()
    text_config_dict = {**TINY_TEXT, "num_hidden_layers": 3, "intermediate_size": 48}
    reference = transformers.CLIPConfig(**TINY_CLIP, text_config_dict=text_config_dict).text_config
    ours = hubformers.CLIPConfig(**TINY_CLIP, text_config_dict=text_config_dict).text_config
    for key in ("num_hidden_layers", "intermediate_size", "hidden_size", "vocab_size"):
        assert getattr(ours, key) == getattr(reference, key), key


@pytest.mark.parametrize("config_class", CONFIGS, ids=ids)
def test_keys_transformers_writes_raise_no_warning(config_class, tmp_path, warnings_of):
    """Our own saves, and transformers' config of the same architecture saved with every key it writes (what its
    checkpoints hold), load without a warning about unknown keys."""
    config_class(**TINY[config_class]).save_pretrained(tmp_path / "ours")
    config_class.from_pretrained(tmp_path / "ours")
    reference_class = config_class.transformers_config
    if reference_class is not None:
        reference = reference_class(**{k: v for k, v in TINY[config_class].items()})
        write_config(tmp_path / "reference", reference.to_dict())
        config_class.from_pretrained(tmp_path / "reference")
    assert not [m for m in warnings_of() if "has no setting" in m]
