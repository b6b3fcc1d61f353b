"""The built-in NER model shipped inside the package (docs/model_card.md): it is packaged, loads offline with
no argument and extracts the obvious entities of a fixed sentence, with offsets."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from rait.builtin import DEFAULT_BUILTIN, builtin_path, is_packaged

pytestmark = pytest.mark.slow


def test_the_builtin_model_is_packaged_in_bf16():
    assert is_packaged(DEFAULT_BUILTIN)
    path = builtin_path(DEFAULT_BUILTIN)
    with safe_open(path / "adapter_model.safetensors", framework="pt") as weights:
        assert {str(weights.get_tensor(name).dtype) for name in weights.keys()} == {"torch.bfloat16"}
    assert json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2-135m"


def test_the_builtin_model_extracts_the_obvious_entities():
    import rait

    text = "Barack Obama was born in Honolulu, Hawaii, and later served as President of the United States."
    entities = rait.NER.from_pretrained().predict_entities(text, ["person", "location"])
    found = {(e["text"], e["type"]) for e in entities}
    assert {("Barack Obama", "person"), ("Honolulu", "location"), ("Hawaii", "location")} <= found
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
