"""Model cards: fill an architecture's template, `model_cards/<architecture>.md`, with the values of a run.

Templates use `string.Template` placeholders (`$name`, `${name}`), which leave the braces of code snippets and
YAML alone. Rendering goes through `huggingface_hub.ModelCard`, which parses the YAML front matter, so a
template or value that would give the Hub a broken card fails here instead.
"""

from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from string import Template

from huggingface_hub import ModelCard


def render_model_card(architecture: str, values: Mapping[str, object]) -> ModelCard:
    """The card of `architecture` with every placeholder filled; a missing value raises KeyError."""
    template = files("hubformers.model_cards").joinpath(f"{architecture}.md").read_text(encoding="utf-8")
    return ModelCard(Template(template).substitute(values))


def write_model_card(architecture: str, values: Mapping[str, object], path: Path) -> ModelCard:
    """Render the card and save it (as a folder's README.md, where the Hub looks for it)."""
    card = render_model_card(architecture, values)
    card.save(path)
    return card
