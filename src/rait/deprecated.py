"""Module paths from before the stage packages, importable with a DeprecationWarning until rait 0.3.

``import rait.predict`` (or ``from rait.benchmarks import load_benchmark``) gives the module that now holds
those names (``MOVED``); submodules of a moved package follow it (``rait.formats.writers`` is
``rait.data.formats.writers``). The old module *is* the new one, so a name patched through either path is
patched for both. Names that moved between modules in the split are found under the new face:
``rait.predict`` and ``rait.predictor`` are :mod:`rait.inference` (``Retriever`` and ``EXAMPLE_MODES`` are now
in :mod:`rait.retrieval`); ``rait.train`` is :mod:`rait.training` without its private names."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "rait.answerer": "rait.inference.answerer",
    "rait.bm25": "rait.retrieval.bm25",
    "rait.benchmarks": "rait.data.benchmarks",
    "rait.chunking": "rait.inference.chunking",
    "rait.constrained": "rait.inference.constrained",
    "rait.constrained_vllm": "rait.inference.constrained_vllm",
    "rait.embed": "rait.retrieval.embed",
    "rait.entities": "rait.inference.entities",
    "rait.file_benchmarks": "rait.data.file_benchmarks",
    "rait.formats": "rait.data.formats",
    "rait.labels": "rait.data.labels",
    "rait.predict": "rait.inference",
    "rait.predictor": "rait.inference",
    "rait.sources": "rait.data.sources",
    "rait.stopping": "rait.inference.stopping",
    "rait.train": "rait.training",
    "rait.vllm_predictor": "rait.inference.vllm",
}


def new_name(name: str) -> str | None:
    """Where the module ``name`` (a path of before the split, or a submodule of one) lives now; None when
    it did not move."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and loads it as the module at its new path, with a DeprecationWarning."""

    def find_spec(self, fullname, path=None, target=None):
        if new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        target = new_name(spec.name)
        warnings.warn(f"{spec.name} is deprecated; import {target}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(target)

    def exec_module(self, module) -> None:
        pass  # the new module is already executed


_FINDER = _MovedFinder()


def install() -> None:
    """Make the old module paths importable (once; :mod:`rait` does it on import). First in the search: a
    submodule of an old package path would otherwise be found again, as a second copy, in the new package's
    folder."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
