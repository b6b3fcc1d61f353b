"""Saving like Hugging Face models (NER.save_pretrained, the model card, rait train's card) and
NER.push_to_hub against a fake HfApi (the Hub is unreachable here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rait.api import NER
from rait.errors import DataError, RaitError
from rait.model_card import render_model_card
from rait.records import Mention, Record
from rait.retrieval import ExamplePool, get_embedder
from rait.retrieval.embed import HashingEmbedder
from rait.testing import save_tiny_model
from rait.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = "Barack Obama was born in Honolulu, Hawaii, and served as the president."
TYPES = ["person", "location"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A two-step rait train run of the tiny model: an adapter directory with its card."""
    root = tmp_path_factory.mktemp("hub")
    save_tiny_model(root / "model")
    turns = [
        {"from": "human", "value": f"Text: {TEXT}"},
        {"from": "gpt", "value": "I've read this text."},
        {"from": "human", "value": "What describes person in the text?"},
        {"from": "gpt", "value": '["Barack Obama"]'},
    ]
    (root / "train.jsonl").write_text(json.dumps({"conversations": turns}) + "\n", encoding="utf-8")
    config = TrainConfig(
        data=[str(root / "train.jsonl")],
        output_dir=str(root / "run"),
        model=str(root / "model"),
        max_steps=2,
        batch_size=1,
        per_device_batch_size=1,
        learning_rate=1e-2,
        lora_r=4,
        lora_alpha=8,
        precision="fp32",
        system_prompt="You find entities.",
    )
    return train(config)


def test_rait_train_writes_a_model_card_from_the_run(run):
    card = (run / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlibrary_name: rait\n")
    base = str((run.parent / "model").resolve())
    assert f'base_model: "{base}"' in card and "- lora" in card
    assert "**Training data**: `train.jsonl` (1 conversations" in card
    assert "**Training data licence**: not recorded" in card
    assert "| lora_r | `4` |" in card and "| learning_rate | `0.01` |" in card
    assert "| optimizer_steps | `2` |" in card and '| system_prompt | "You find entities." |' not in card
    assert '| system_prompt | `"You find entities."` |' in card
    assert "## Limits" in card and "None recorded" in card


def test_save_pretrained_of_an_adapter_reloads_with_the_same_settings_and_answers(run, tmp_path):
    ner = NER.from_pretrained(
        str(run), decoding="constrained", lang="en", max_new_tokens=8, threshold=0.3, multi_label=True
    )
    expected = ner.predict_entities(TEXT, TYPES)
    saved = ner.save_pretrained(tmp_path / "saved", scores={"conll2003": 12.345}, license="apache-2.0")
    names = {p.name for p in saved.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "rait_config.json"} <= names
    assert {"README.md", "rait_train_config.json", "train_summary.json"} <= names
    assert "checkpoint-2" not in names and "train_log.jsonl" not in names
    settings = json.loads((saved / "rait_config.json").read_text())
    assert settings == {
        "weights": "adapter",
        "base_model": str((run.parent / "model").resolve()),
        "decoding": "constrained",
        "system_prompt": "You find entities.",
        "lang": "en",
        "threshold": 0.3,
        "multi_label": True,
        "examples": "none",
    }
    again = NER.from_pretrained(str(saved), max_new_tokens=8)
    assert (again.predictor.decoding, again.lang) == ("constrained", "en")
    assert (again.threshold, again.multi_label) == (0.3, True)
    assert again.predictor.system_prompt == "You find entities."
    assert again.predict_entities(TEXT, TYPES) == expected
    card = (saved / "README.md").read_text()
    assert "license: apache-2.0" in card and "| conll2003 | 12.35 |" in card
    assert '| decoding | `"constrained"` |' in card


POOL = [
    Record("p0", "Angela Merkel visited Paris in May.", [Mention("Angela Merkel", "person")]),
    Record("p1", "The Louvre is a museum in Paris.", [Mention("Paris", "location")]),
    Record("p2", "Honolulu is the capital of Hawaii.", [Mention("Honolulu", "location")]),
]


def test_save_pretrained_ships_the_example_pool_and_its_default_mode(run, tmp_path, monkeypatch):
    monkeypatch.setenv("RAIT_CACHE_DIR", str(tmp_path / "cache"))
    pool = ExamplePool(POOL, get_embedder("hashing"), show_progress=False)
    ner = NER.from_pretrained(
        str(run), pool=pool, k=1, bm25_threshold=0, examples="pool", lang="en", max_new_tokens=8
    )
    expected = ner.extract([TEXT], TYPES)[0]
    assert expected.n_examples == 1  # calls that name no examples retrieve from the pool
    saved = ner.save_pretrained(tmp_path / "saved")
    settings = json.loads((saved / "rait_config.json").read_text())
    assert settings["examples"] == "pool"
    assert settings["pool"] == {
        "records": "pool.jsonl",
        "vectors": "pool_vectors.npy",
        "embedder": "hashing-256",
        "lang": "en",
        "size": 3,
        "mode": "out-domain",
        "k": 1,
        "bm25_threshold": 0,
    }
    assert "It ships an example pool: 3 labelled passages" in (saved / "README.md").read_text()
    again = NER.from_pretrained(str(saved), max_new_tokens=8)
    assert [r.to_dict() for r in again.pool.records] == [r.to_dict() for r in POOL]
    assert (again.examples, again.k, again.bm25_threshold) == ("pool", 1, 0)
    assert isinstance(again.pool.embedder, HashingEmbedder) and again.pool.embedder.n_embedded == 0
    found = again.extract([TEXT], TYPES)[0]  # its query embedding is cached: no pool record embedded
    assert (found.entities, found.n_examples, again.pool.embedder.n_embedded) == (expected.entities, 1, 0)
    assert again.pool.retrieve(["Merkel spoke in Paris."], k=1, bm25_threshold=0)[0][0].id == "p0"
    assert again.extract([TEXT], TYPES, examples="none")[0].n_examples == 0
    mine = NER.from_pretrained(str(saved), pool=POOL[:1], embedder="hashing", max_new_tokens=8)
    assert [r.id for r in mine.pool.records] == ["p0"] and mine.k == 2  # a given pool replaces the saved one
    (saved / "pool_vectors.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="pool_vectors.npy: cannot read the pool's embeddings"):
        NER.from_pretrained(str(saved), max_new_tokens=8)


def test_examples_other_than_none_as_the_default_need_a_pool(run):
    with pytest.raises(RaitError, match="examples='pool' needs a pool"):
        NER.from_pretrained(str(run), examples="pool", max_new_tokens=8)


def test_save_pretrained_without_an_adapter_writes_merged_weights(tmp_path):
    ner = NER.from_pretrained(str(save_tiny_model(tmp_path / "tiny")), decoding="free", max_new_tokens=6)
    expected = ner.predict_entities(TEXT, TYPES)
    saved = ner.save_pretrained(tmp_path / "merged")
    assert (saved / "config.json").is_file() and (saved / "model.safetensors").is_file()
    assert json.loads((saved / "rait_config.json").read_text())["weights"] == "merged"
    again = NER.from_pretrained(str(saved), max_new_tokens=6)
    assert again.predictor.decoding == "free"
    assert again.predict_entities(TEXT, TYPES) == expected
    card = (saved / "README.md").read_text()
    assert "Training settings: not recorded" in card and "- lora" not in card


def test_the_card_of_the_builtin_model_carries_its_scores():
    from rait.builtin import DEFAULT_BUILTIN, builtin_path, is_packaged

    if not is_packaged(DEFAULT_BUILTIN):
        pytest.skip("the built-in model is not packaged")
    card = render_model_card(builtin_path(DEFAULT_BUILTIN))
    assert 'base_model: "smollm2-135m"' in card and "language: en" in card
    assert "| average, constrained-words decoding | 32.73 |" in card


class FakeHfApi:
    """Records create_repo / upload_folder calls and the files of the uploaded folder."""

    instances: list[FakeHfApi] = []
    fail: str | None = None

    def __init__(self, token=None):
        self.token = token
        self.calls: list[tuple] = []
        self.uploaded: dict[str, bytes] = {}
        FakeHfApi.instances.append(self)

    def create_repo(self, repo_id, **options):
        if self.fail:
            raise OSError(self.fail)
        self.calls.append(("create_repo", repo_id, options))

    def upload_folder(self, *, folder_path, repo_id, **options):
        self.calls.append(("upload_folder", repo_id, options))
        self.uploaded = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        return f"https://huggingface.co/{repo_id}/commit/0"


def test_push_to_hub_creates_the_repo_and_uploads_the_saved_folder(run, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    FakeHfApi.instances.clear()
    ner = NER.from_pretrained(str(run), max_new_tokens=4)
    assert (
        ner.push_to_hub("me/tiny-ner", private=True, token="t0k")
        == "https://huggingface.co/me/tiny-ner/commit/0"
    )
    (api,) = FakeHfApi.instances
    assert api.token == "t0k"
    assert api.calls == [
        ("create_repo", "me/tiny-ner", {"repo_type": "model", "private": True, "exist_ok": True}),
        ("upload_folder", "me/tiny-ner", {"repo_type": "model", "commit_message": "Upload rait NER model"}),
    ]
    assert {"adapter_model.safetensors", "rait_config.json", "tokenizer.json"} <= set(api.uploaded)
    card = api.uploaded["README.md"].decode()
    assert card.count("# me/tiny-ner") == 1 and 'from_pretrained(snapshot_download("me/tiny-ner"))' in card
    FakeHfApi.fail = "401 Client Error: Unauthorized for url\nmore detail"
    try:
        with pytest.raises(
            RaitError, match=r"^cannot push to the Hub repo me/tiny-ner: 401 Client Error[^\n]*$"
        ):
            ner.push_to_hub("me/tiny-ner")
    finally:
        FakeHfApi.fail = None


def test_save_pretrained_into_a_file_is_refused(run, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RaitError, match="is a file"):
        NER.from_pretrained(str(run), max_new_tokens=4).save_pretrained(tmp_path / "file")
