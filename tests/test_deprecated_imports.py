"""Module paths from before the stage packages (rait.deprecated): importable, the same module objects as the
new paths, with a DeprecationWarning; the names the docs showed under them still import."""

import importlib
import sys
import warnings

import pytest

from rait.deprecated import MOVED, new_name

NEEDS_VLLM = {"rait.constrained_vllm"}  # its new module imports vLLM


def _import_fresh(name: str):
    sys.modules.pop(name, None)
    return importlib.import_module(name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_new_module_with_a_warning(old):
    if old in NEEDS_VLLM:
        pytest.importorskip("vllm")
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; import {MOVED[old]}"):
        module = _import_fresh(old)
    assert module is importlib.import_module(MOVED[old])


def test_submodules_of_a_moved_package_follow_it():
    assert new_name("rait.formats.writers") == "rait.data.formats.writers"
    assert new_name("rait.retrieval") is None and new_name("rait.predictions") is None
    with warnings.catch_warnings():  # the old package first: its submodules must not load a second time
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module("rait.formats")
    with pytest.warns(DeprecationWarning):
        module = _import_fresh("rait.formats.writers")
    assert module is importlib.import_module("rait.data.formats.writers")


@pytest.mark.parametrize(
    ("old", "names"),
    [
        ("rait.benchmarks", ["get_spec", "load_benchmark", "sample_path", "BENCHMARKS"]),
        ("rait.formats", ["LoadStats", "convert", "detect_format", "load_records", "write_records"]),
        ("rait.file_benchmarks", ["load_file_benchmark"]),
        ("rait.embed", ["get_embedder"]),
        ("rait.predict", ["PredictConfig", "run_predict", "predict_records", "Predictor", "load_predictor"]),
        ("rait.predictor", ["Predictor", "load_predictor", "BACKENDS"]),
        ("rait.chunking", ["ChunkedAnswerer", "merge_chunk_entities", "DEFAULT_MAX_CHUNK_TOKENS"]),
        ("rait.entities", ["is_word_char", "entities_from_answers"]),
        ("rait.train", ["train", "TrainConfig", "read_validation", "split_validation"]),
    ],
)
def test_names_shown_under_old_paths_still_import(old, names):
    with pytest.warns(DeprecationWarning):
        module = _import_fresh(old)
    assert all(hasattr(module, name) for name in names)


def test_the_new_paths_import_without_a_warning(recwarn):
    for old, name in sorted(MOVED.items()):
        if old not in NEEDS_VLLM:
            importlib.import_module(name)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning) and "rait" in str(w.message)]
