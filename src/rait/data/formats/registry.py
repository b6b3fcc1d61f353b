"""The loader of each input format name; its order is :data:`LOAD_FORMATS`."""

from __future__ import annotations

from collections.abc import Callable

from rait.data.formats.json_formats import (
    _load_boson,
    _load_entity_list,
    _load_gliner,
    _load_pile_qa,
    _load_rait,
    _load_skyner,
    _load_uniner,
)
from rait.data.formats.reading import _Reader
from rait.data.formats.standoff import _load_brat, _load_cmeee
from rait.data.formats.tagged import (
    _load_tokens_tags,
    _split_char,
    _split_columns,
    _split_tab,
    _split_tab_tag_first,
    _split_weibo,
    _tagged_loader,
)
from rait.records import Record

_LOADERS: dict[str, Callable[[_Reader], list[Record]]] = {
    "rait": _load_rait,
    "uniner": _load_uniner,
    "bio": _tagged_loader(_split_tab, "'word<TAB>TAG' or 'word TAG'", " "),
    "bio-tagfirst": _tagged_loader(_split_tab_tag_first, "'TAG<TAB>word'", " "),
    "conll": _tagged_loader(_split_columns, "CoNLL columns (token ... tag)", " "),
    "char-bio": _tagged_loader(_split_char, "'char TAG'", ""),
    "bmes": _tagged_loader(_split_char, "'char TAG'", ""),
    "weibo": _tagged_loader(_split_weibo, "'<char><position><TAB>TAG'", ""),
    "gliner": _load_gliner,
    "entity-list-jsonl": _load_entity_list,
    "boson": _load_boson,
    "cmeee": _load_cmeee,
    "skyner": _load_skyner,
    "pile-qa": _load_pile_qa,
    "tokens-tags": _load_tokens_tags,
    "brat": _load_brat,
}
LOAD_FORMATS: tuple[str, ...] = tuple(_LOADERS)
