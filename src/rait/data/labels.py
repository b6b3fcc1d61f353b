"""Label maps: a file's tag codes (``PER``, ``CONPRI``) to the natural-language type names a model is asked
about (``person``), applied to the questions and the gold mentions alike.

A map comes from a JSON/YAML file (``{code: name}``), an inline ``PER=person,LOC=location`` list, or the
name of a built-in map for a common tag set (:data:`BUILTIN_MAPS`). A name of ``null`` (file) or an empty
name (inline, ``MISC=``) drops that code from the benchmark, as CrossNER's ``misc``. When no map is given,
the built-in map whose code set equals the file's exactly (and whose language fits) is chosen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rait.errors import DataError, RaitError
from rait.fileio import read_text
from rait.records import Mention, Record


@dataclass(frozen=True, slots=True)
class LabelMap:
    """``names`` maps codes to type names in query order; a code mapped to ``None`` is dropped."""

    name: str
    names: dict[str, str | None]
    lang: str | None = None

    @property
    def types(self) -> list[str]:
        """The type names, in order, without repeats."""
        return list(dict.fromkeys(n for n in self.names.values() if n is not None))

    def apply(self, records: list[Record], source: str | Path) -> None:
        """Rename the mentions' and the ``types``' codes in place; DataError for a code the map lacks."""
        missing = sorted({m.type for r in records for m in r.mentions} - self.names.keys())
        if missing:
            raise DataError(
                source,
                f"label map {self.name!r} has no name for label(s) {', '.join(map(repr, missing))}; "
                f"it maps {', '.join(self.names)}",
            )
        for record in records:
            record.mentions = [
                Mention(m.text, self.names[m.type], m.start, m.end)
                for m in record.mentions
                if self.names[m.type] is not None
            ]
            if record.types is not None:
                kept = (self.names.get(t, t) for t in record.types if self.names.get(t, t) is not None)
                record.types = list(dict.fromkeys(kept))


def _builtin(name: str, lang: str, pairs: str) -> LabelMap:
    """A map from ``CODE=name;CODE=name`` (``;`` because names may hold commas)."""
    names = dict(pair.split("=", 1) for pair in pairs.split(";"))
    return LabelMap(name, names, lang)


_CONLL_EN = "PER=person;ORG=organization;LOC=location"
_CONLL_ZH = "PER=人名;LOC=地名;ORG=机构名"

BUILTIN_MAPS: dict[str, LabelMap] = {
    m.name: m
    for m in (
        _builtin("conll2003", "en", _CONLL_EN + ";MISC=miscellaneous"),
        _builtin("wikiann", "en", _CONLL_EN),  # also BTC and other PER/ORG/LOC sets
        _builtin(
            "ontonotes5",
            "en",
            "PERSON=person;NORP=nationality religious or political group;FAC=facility;ORG=organization;"
            "GPE=geopolitical entity;LOC=location;PRODUCT=product;EVENT=event;WORK_OF_ART=work of art;"
            "LAW=law;LANGUAGE=language;DATE=date;TIME=time;PERCENT=percent;MONEY=money;QUANTITY=quantity;"
            "ORDINAL=ordinal number;CARDINAL=cardinal number",
        ),
        _builtin(
            "wnut17",
            "en",
            "person=person;location=location;corporation=corporation;group=group;product=product;"
            "creative-work=creative work",
        ),
        _builtin(
            "tweetner7",
            "en",
            "person=person;location=location;corporation=corporation;group=group;product=product;"
            "creative_work=creative work;event=event",
        ),
        _builtin(
            "wnut16",
            "en",
            "person=person;geo-loc=location;company=company;facility=facility;product=product;"
            "musicartist=music artist;movie=movie;sportsteam=sports team;tvshow=tv show;other=other",
        ),
        _builtin("msra", "zh", _CONLL_ZH),  # also People's Daily
        _builtin("msra_nr", "zh", "NR=人名;NS=地名;NT=机构名"),
        _builtin("ontonotes4", "zh", _CONLL_ZH + ";GPE=地缘政治实体"),
        _builtin(
            "resume",
            "zh",
            "NAME=人名;CONT=国籍;EDU=学历;TITLE=职称;ORG=组织名;RACE=民族;PRO=专业;LOC=地名",
        ),
        _builtin(
            "boson",
            "zh",
            "person_name=人名;location=地点名称;time=时间;org_name=组织名称;company_name=公司名称;"
            "product_name=产品名称",
        ),
        _builtin(
            "weibo",
            "zh",
            "PER.NAM=人名;PER.NOM=人物泛称;LOC.NAM=地名;LOC.NOM=地点泛称;GPE.NAM=行政区名;GPE.NOM=行政区泛称;"
            "ORG.NAM=机构名;ORG.NOM=机构泛称",
        ),
    )
}


def parse_label_map(spec: str) -> LabelMap:
    """A built-in map's name, a JSON/YAML file of ``{code: name}``, or inline ``CODE=name,CODE=name``."""
    if spec in BUILTIN_MAPS:
        return BUILTIN_MAPS[spec]
    path = Path(spec)
    if "=" not in spec or path.is_file():
        if not path.exists():
            raise RaitError(
                f"--label-map {spec!r} is not a file, an inline CODE=name list, "
                f"nor a built-in map ({', '.join(BUILTIN_MAPS)})"
            )
        return _map_file(path)
    names: dict[str, str | None] = {}
    for item in spec.split(","):
        code, sep, name = item.partition("=")
        if not sep or not code.strip():
            raise RaitError(f"--label-map: expected CODE=name, got {item!r}")
        names[code.strip()] = name.strip() or None
    return LabelMap("inline", names)


def _map_file(path: Path) -> LabelMap:
    import yaml

    try:
        data = yaml.safe_load(read_text(path))  # JSON is YAML
    except yaml.YAMLError as exc:
        line = exc.problem_mark.line + 1 if getattr(exc, "problem_mark", None) else None
        raise DataError(path, f"invalid JSON/YAML: {getattr(exc, 'problem', exc)}", line=line) from None
    if not isinstance(data, dict) or not data:
        raise DataError(path, "expected a mapping of label codes to type names")
    for code, name in data.items():
        if not isinstance(code, str) or not (name is None or isinstance(name, str) and name.strip()):
            raise DataError(path, f"expected a type name (or null to drop it), got {name!r}", field=str(code))
    return LabelMap(path.name, {code: None if name is None else name.strip() for code, name in data.items()})


def detect_label_map(codes: set[str], lang: str) -> LabelMap | None:
    """The built-in map whose codes are exactly ``codes`` and whose language is ``lang``, if any."""
    return next((m for m in BUILTIN_MAPS.values() if m.lang == lang and set(m.names) == codes), None)
