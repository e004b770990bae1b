"""What every hubformers config shares on top of transformers' `PreTrainedConfig`.

transformers sets the keyword overrides of `from_pretrained` / `from_dict` and `attribute_map` aliases on a built
config, past its checks, and keeps an unknown key as an attribute nothing reads (a misspelt `num_hiden_layers`
builds the default depth without a word). `HubformersConfig` checks overrides and aliases like constructor
arguments and warns about every key it does not know.
"""

from dataclasses import fields
from functools import cache
from typing import ClassVar

from transformers import PreTrainedConfig
from transformers.generation.configuration_utils import GenerationConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Keys of a config.json that are no field of `PreTrainedConfig`: what its `__post_init__` and `from_dict` consume,
# the attributes of every transformers 4 config, and the generation settings older configs carry.
TRANSFORMERS_KEYS = frozenset(
    """_attn_implementation_autoset _attn_implementation_internal _commit_hash _experts_implementation_internal
    _name_or_path add_cross_attention attn_implementation auto_map bos_token_id cross_attention_hidden_size
    decoder_start_token_id eos_token_id experts_implementation finetuning_task gradient_checkpointing is_decoder
    model_type name_or_path num_labels output_attentions pad_token_id per_layer_config prefix pruned_heads
    rope_scaling rope_theta sep_token_id task_specific_params tf_legacy_loss tie_encoder_decoder tie_word_embeddings
    tokenizer_class torch_dtype torchscript use_bfloat16""".split()
).union(GenerationConfig._get_default_generation_params())

# Keywords of `PreTrainedConfig.from_dict` that it handles itself (it folds these into the config's arguments too).
FROM_DICT_KEYWORDS = frozenset(
    """return_unused_kwargs _from_auto _from_pipeline num_labels attn_implementation experts_implementation
    output_attentions torch_dtype dtype name_or_path""".split()
)

# out_features and out_indices name the same stages: an override of one replaces both loaded values.
LINKED_KEYS = {"out_features": "out_indices", "out_indices": "out_features"}


def to_pair(size: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    """An image or patch size as (height, width)."""
    return tuple(size) if isinstance(size, (list, tuple)) else (size, size)


def as_dict(config: PreTrainedConfig | dict | None) -> dict:
    """A sub-config as the dict it can be built from (None: all defaults)."""
    return config.to_dict() if isinstance(config, PreTrainedConfig) else dict(config or {})


@cache
def known_keys(config_class: type["HubformersConfig"]) -> frozenset[str]:
    """The keys a config.json for `config_class` may hold without a warning: its fields and aliases, transformers'
    own keys, and those of transformers' config of the same architecture (its checkpoints load here)."""
    keys = {f.name for f in fields(config_class)} | set(config_class.attribute_map) | TRANSFORMERS_KEYS
    reference = config_class.transformers_config
    if reference is not None:
        keys |= {f.name for f in fields(reference)} | set(reference.attribute_map) | set(reference().to_dict())
    return frozenset(keys)


class HubformersConfig(PreTrainedConfig):
    """Base of every hubformers config: each `__post_init__` starts with `kwargs = self.read_extra_kwargs(kwargs)`
    and checks its values after it (later assignments are not checked, as in transformers)."""

    # transformers' config of the same architecture, whose `config.json` files load into this class
    transformers_config: ClassVar[type[PreTrainedConfig] | None] = None

    def read_extra_kwargs(self, kwargs: dict) -> dict:
        """The keyword arguments that are no field, minus `model_type` and `attribute_map` aliases (which set their
        field, so its checks see it); warns about a foreign `model_type` and unknown keys."""
        config_class = type(self)
        model_type = kwargs.pop("model_type", None)
        reference = config_class.transformers_config
        if model_type not in (None, config_class.model_type, reference and reference.model_type):
            logger.warning(
                f"A config of model_type {model_type!r} is being loaded as {config_class.__name__} (model_type "
                f"{config_class.model_type!r}); its values are read and checked as {config_class.__name__}'s."
            )
        field_names = {f.name for f in fields(config_class)}
        for alias, name in config_class.attribute_map.items():
            if alias in kwargs:
                value = kwargs.pop(alias)
                if name in field_names:
                    setattr(self, name, value)
                else:
                    kwargs[name] = value
        unknown = sorted(set(kwargs) - known_keys(config_class))
        if unknown:
            logger.warning(
                f"{config_class.__name__} has no setting {', '.join(f'`{key}`' for key in unknown)}: kept on the "
                "config, but nothing reads it (a misspelt key leaves its setting at the default)."
            )
        return kwargs

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """As transformers' `from_dict`, but keyword overrides (`from_pretrained(path, key=value)`) join the loaded
        values before the config is built; a dict for a sub-config updates the loaded one, as in transformers."""
        config_dict = dict(config_dict)
        defaults = cls()
        for key in [key for key in kwargs if key not in FROM_DICT_KEYWORDS]:
            if key not in config_dict and not hasattr(defaults, key):
                continue  # not a setting: transformers returns it as unused (a model's keyword argument)
            value = kwargs.pop(key)
            if key in LINKED_KEYS and LINKED_KEYS[key] not in kwargs:
                config_dict.pop(LINKED_KEYS[key], None)
            if key in cls.sub_configs and isinstance(value, dict):
                value = {**as_dict(config_dict.get(key)), **value}
            config_dict[key] = value
        return super().from_dict(config_dict, **kwargs)


__all__ = ["HubformersConfig"]
