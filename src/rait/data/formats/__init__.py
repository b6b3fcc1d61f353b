"""Loaders and writers for the NER data formats found in the wild, all read into :class:`rait.records.Record`.

Every loader reads one file. A malformed item (line, sentence block or JSON array element) raises
:class:`rait.errors.DataError` naming the file, line and problem; with ``skip_bad=True`` it is skipped and
listed in :class:`LoadStats` instead, never dropped silently. Text conventions: word-level tagged files
(``bio``, ``bio-tagfirst``) join tokens with single spaces (UniversalNER's convention), character-level ones
(``char-bio``, ``bmes``, ``weibo``) with nothing; mention spans are character offsets into that text
(end exclusive). Sources that give only mention strings (``uniner``, ``boson``, ``skyner``, ``pile-qa``)
yield mentions with ``start``/``end`` None.

Quirks of the real files, handled explicitly:
- an ``I-``/``M-``/``E-`` tag that does not continue an entity of the same type (Weibo, Pile-NER BIO) is read
  as the start of a new entity (the conlleval convention) and listed in ``LoadStats.repaired``;
- Weibo's first column is the character followed by its position in the word (``李0``, ``开1``); the
  position is stripped; a few characters are two U+FFFD replacement characters and are kept as they are;
- CMeEE's train file has empty inverted spans (``16    15    pro``: end = start - 1); such an empty mention
  is dropped and listed in ``LoadStats.repaired``; CRLF line ends are accepted.


Layout: :mod:`~rait.data.formats.reading` (shared reader machinery, :class:`LoadStats`),
:mod:`~rait.data.formats.tagged` (BIO/BMES/CoNLL/Weibo and ``tokens-tags``),
:mod:`~rait.data.formats.standoff` (brat, CMeEE), :mod:`~rait.data.formats.json_formats` (the JSON/jsonl
layouts), :mod:`~rait.data.formats.registry` (format name -> loader), :mod:`~rait.data.formats.detect` (format
and language detection), :mod:`~rait.data.formats.loading` (:func:`load_records`, :func:`load_pile_ner_hub`)
and :mod:`~rait.data.formats.writers` (:func:`write_records`, :func:`convert`).
"""

from rait.data.formats.detect import detect_format, detect_lang, guess_format
from rait.data.formats.loading import load_pile_ner_hub, load_records, parse_columns
from rait.data.formats.reading import LoadStats
from rait.data.formats.registry import LOAD_FORMATS
from rait.data.formats.tagged import DOCSTART
from rait.data.formats.writers import WRITE_FORMATS, convert, write_records

__all__ = [
    "DOCSTART",
    "LOAD_FORMATS",
    "WRITE_FORMATS",
    "LoadStats",
    "convert",
    "detect_format",
    "detect_lang",
    "guess_format",
    "load_pile_ner_hub",
    "load_records",
    "parse_columns",
    "write_records",
]
