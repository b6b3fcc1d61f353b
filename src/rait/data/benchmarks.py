"""The registry of zero-shot benchmarks and training sources: where each split lives, its format, and the
mapping from the source's label codes to the natural-language type names the model is asked about.

English names are UniversalNER's (checked against its eval files); CrossNER's ``misc`` is not queried by
UniversalNER and is left out of the label set. Chinese names are this project's (Boson's and Yidu's
sources already use Chinese names). A test split is sampled to at most ``max_examples`` passages with a
seeded RNG, keeping file order, as in the RA-IT paper (2,000)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from rait.data.formats import LoadStats, load_records
from rait.errors import DataError, RaitError
from rait.records import DEFAULT_SEED, Mention, Record


@dataclass(frozen=True, slots=True)
class BenchmarkSpec:
    """One dataset: ``splits`` maps a split name to files under the data directory (concatenated);
    ``labels`` maps source label codes to type names, in query order (None: open label set, kept raw);
    ``dropped`` lists codes left out of the benchmark. ``halves``: splits that are one half (0 or 1) of a
    fixed shuffle of their files (:data:`HALF_SEED`), as the RA-IT paper split the dev sets of benchmarks
    whose test labels are not public into dev and test."""

    name: str
    lang: str
    fmt: str
    splits: dict[str, tuple[str, ...]]
    labels: dict[str, str] | None
    dropped: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    notes: str = ""
    kind: str = "benchmark"
    halves: dict[str, int] = field(default_factory=dict)
    types: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(dict.fromkeys((self.labels or {}).values())))


def _crossner(domain: str, codes: str) -> BenchmarkSpec:
    """A CrossNER domain; ``codes`` are its raw labels, space separated."""
    names = {
        "organisation": "organization",
        "programlang": "program language",
        "literarygenre": "literary genre",
        "musicalartist": "musical artist",
        "musicalinstrument": "musical instrument",
        "musicgenre": "music genre",
        "politicalparty": "political party",
        "academicjournal": "academic journal",
        "astronomicalobject": "astronomical object",
        "chemicalcompound": "chemical compound",
        "chemicalelement": "chemical element",
    }
    base = f"eval/en/bio/CrossNER/{domain}"
    return BenchmarkSpec(
        name=f"crossner_{domain}",
        lang="en",
        fmt="bio",
        splits={split: (f"{base}/{split}.txt",) for split in ("train", "dev", "test")},
        labels={code: names.get(code, code) for code in codes.split()},
        dropped=("misc",),
        notes="misc is not queried (as in UniversalNER); UniversalNER's file lacks the last test sentence"
        if domain == "politics"
        else "misc is not queried (as in UniversalNER)",
    )


_SPECS = [
    _crossner(
        "ai",
        "algorithm conference country field location metrics organisation person product programlang "
        "researcher task university",
    ),
    _crossner(
        "literature",
        "award book country event literarygenre location magazine organisation person poem writer",
    ),
    _crossner(
        "music",
        "album award band country event location musicalartist musicalinstrument musicgenre "
        "organisation person song",
    ),
    _crossner("politics", "country election event location organisation person politicalparty politician"),
    _crossner(
        "science",
        "academicjournal astronomicalobject award chemicalcompound chemicalelement country "
        "discipline enzyme event location organisation person protein scientist theory university",
    ),
    BenchmarkSpec(
        name="mit_movie",
        lang="en",
        fmt="bio-tagfirst",
        splits={s: (f"eval/en/bio/MIT/movie/{s}.txt",) for s in ("train", "test")},
        labels={
            "ACTOR": "actor",
            "CHARACTER": "character",
            "DIRECTOR": "director",
            "GENRE": "genre",
            "PLOT": "plot",
            "RATING": "rating",
            "RATINGS_AVERAGE": "average ratings",
            "REVIEW": "review",
            "SONG": "song",
            "TITLE": "title",
            "TRAILER": "trailer",
            "YEAR": "year",
        },
        notes="2,443 test sentences, sampled to 2,000",
    ),
    BenchmarkSpec(
        name="mit_restaurant",
        lang="en",
        fmt="bio-tagfirst",
        splits={s: (f"eval/en/bio/MIT/restaurant/{s}.txt",) for s in ("train", "test")},
        labels={
            "Amenity": "Amenity",
            "Cuisine": "Cuisine",
            "Dish": "Dish",
            "Hours": "Hours",
            "Location": "Location",
            "Price": "Price",
            "Rating": "Rating",
            "Restaurant_Name": "Restaurant Name",
        },
        notes="UniversalNER's file lacks the last test sentence",
    ),
    BenchmarkSpec(
        name="weibo",
        lang="zh",
        fmt="weibo",
        splits={s: (f"eval/zh/weibo/weiboNER_2nd_conll.{s}",) for s in ("train", "dev", "test")},
        labels={
            "PER.NAM": "人名",
            "PER.NOM": "人物泛称",
            "LOC.NAM": "地名",
            "LOC.NOM": "地点泛称",
            "GPE.NAM": "行政区名",
            "GPE.NOM": "行政区泛称",
            "ORG.NAM": "机构名",
            "ORG.NOM": "机构泛称",
        },
        notes=".NAM = named mention, .NOM = nominal mention",
    ),
    BenchmarkSpec(
        name="msra",
        lang="zh",
        fmt="entity-list-jsonl",
        splits={"test": ("eval/zh/msra/test.jsonl",)},
        labels={"PER": "人名", "LOC": "地名", "ORG": "机构名"},
        notes="4,365 test sentences, sampled to 2,000; no train split here",
    ),
    BenchmarkSpec(
        name="boson",
        lang="zh",
        fmt="boson",
        splits={s: (f"eval/zh/boson/{s}.jsonl",) for s in ("train", "dev", "test")},
        labels={name: name for name in ("产品名称", "时间", "人名", "组织名称", "地点名称", "公司名称")},
        notes="the RA-IT authors' split; names from abb2labelname.json",
    ),
    BenchmarkSpec(
        name="cluener",
        lang="zh",
        fmt="entity-list-jsonl",
        splits={
            "train": ("eval/zh/cluener/train.jsonl",),
            "dev": ("eval/zh/cluener/dev.jsonl",),
            "test": ("eval/zh/cluener/dev.jsonl",),
        },
        halves={"test": 0, "dev": 1},
        labels={
            "address": "地址",
            "book": "书名",
            "company": "公司",
            "game": "游戏",
            "government": "政府机构",
            "movie": "电影",
            "name": "人名",
            "organization": "组织机构",
            "position": "职位",
            "scene": "景点",
        },
        notes="test = a seeded half of the dev file, dev = the other half (the test labels are not public)",
    ),
    BenchmarkSpec(
        name="cmeee",
        lang="zh",
        fmt="cmeee",
        splits={
            "train": ("eval/zh/cmeee/train.txt",),
            "dev": ("eval/zh/cmeee/dev.txt",),
            "test": ("eval/zh/cmeee/dev.txt",),
        },
        halves={"test": 0, "dev": 1},
        labels={
            "dis": "疾病",
            "sym": "临床表现",
            "pro": "医疗程序",
            "equ": "医疗设备",
            "dru": "药物",
            "ite": "医学检验项目",
            "bod": "身体部位",
            "dep": "科室",
            "mic": "微生物类",
        },
        aliases=("cmeee_v1",),
        notes="test = a seeded half of the dev file (2,500, sampled to 2,000), dev = the other half",
    ),
    BenchmarkSpec(
        name="yidu",
        lang="zh",
        fmt="entity-list-jsonl",
        splits={
            "train": ("eval/zh/yidu/train1.jsonl", "eval/zh/yidu/train2.jsonl"),
            "test": ("eval/zh/yidu/test.jsonl",),
        },
        labels={name: name for name in ("疾病和诊断", "影像检查", "实验室检验", "手术", "药物", "解剖部位")},
        aliases=("yidu_s4k",),
    ),
    BenchmarkSpec(
        name="peoples_daily",
        lang="zh",
        fmt="char-bio",
        splits={
            "dev": ("eval/zh/peoples_daily_1998/example.dev",),
            "test": ("eval/zh/peoples_daily_1998/example.test",),
        },
        labels={"PER": "人名", "LOC": "地名", "ORG": "机构名"},
        aliases=("peoples_daily_1998", "ren"),
        notes="People's Daily 1998, standing in for the paper's 2014 edition; no train split",
    ),
    BenchmarkSpec(
        name="ontonotes4",
        lang="zh",
        fmt="bmes",
        splits={s: (f"eval/zh/ontonotes4/{s}.char.bmes",) for s in ("train", "dev", "test")},
        labels={"PER": "人名", "LOC": "地名", "ORG": "机构名", "GPE": "地缘政治实体"},
        aliases=("ontonotes", "ontonotes_4"),
        notes="LDC-licensed, not distributed: put the Chinese OntoNotes 4 BMES files "
        "({train,dev,test}.char.bmes) in eval/zh/ontonotes4/",
    ),
]

_TRAINING = [
    BenchmarkSpec(
        name="pile_ner_subset",
        lang="en",
        fmt="bio",
        splits={"train": ("train/pile_ner_subset/passages_bio.txt",)},
        labels=None,
        kind="train",
        notes="2,217 Pile-NER passages (UniversalNER's ChatGPT annotations)",
    ),
    BenchmarkSpec(
        name="sky_ner_subset",
        lang="zh",
        fmt="skyner",
        splits={"train": ("train/sky_ner_subset/sky_ner_937.json",)},
        labels=None,
        kind="train",
        notes="937 Sky-NER passages (the RA-IT paper's ChatGPT annotations)",
    ),
]

BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in _SPECS}
TRAINING_SOURCES: dict[str, BenchmarkSpec] = {spec.name: spec for spec in _TRAINING}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


_LOOKUP = {_key(alias): spec for spec in (*_SPECS, *_TRAINING) for alias in (spec.name, *spec.aliases)}


def get_spec(name: str) -> BenchmarkSpec:
    """A benchmark or training source by name, alias or UniversalNER file stem (``CrossNER_AI``)."""
    try:
        return _LOOKUP[_key(name)]
    except KeyError:
        known = ", ".join([*BENCHMARKS, *TRAINING_SOURCES])
        raise RaitError(f"unknown benchmark {name!r}; known: {known}") from None


def data_dir() -> Path | None:
    """``$RAIT_DATA_DIR`` if set, else ``<repo>/../shared/data`` if it exists, else None."""
    return _find_data_dir()


def _find_data_dir() -> Path | None:
    """:func:`data_dir` under a name that functions with a ``data_dir`` parameter can still call."""
    if env := os.environ.get("RAIT_DATA_DIR"):
        return Path(env)
    shared = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return shared if shared.is_dir() else None


DEFAULT_MAX_EXAMPLES = 2000  # test passages sampled per benchmark
HALF_SEED = 42


def split_paths(name: str, split: str = "test", *, data_dir: str | Path | None = None) -> list[Path]:
    """The files of one split (they may not exist); a half split's are its whole file's."""
    spec = get_spec(name)
    if split not in spec.splits:
        raise RaitError(f"{spec.name} has no {split!r} split; it has {', '.join(spec.splits)}")
    root = Path(data_dir) if data_dir is not None else _find_data_dir()
    if root is None:
        raise RaitError("no data directory: set RAIT_DATA_DIR to the folder holding eval/ and train/")
    return [root / rel for rel in spec.splits[split]]


def is_available(name: str, split: str = "test", *, data_dir: str | Path | None = None) -> bool:
    """Whether every file of the split is present."""
    try:
        return all(p.is_file() for p in split_paths(name, split, data_dir=data_dir))
    except RaitError:
        return False


def _map_labels(spec: BenchmarkSpec, path: Path, record: Record) -> list[Mention]:
    if spec.labels is None:
        return record.mentions
    mentions = []
    for m in record.mentions:
        if m.type in spec.labels:
            mentions.append(Mention(m.text, spec.labels[m.type], m.start, m.end))
        elif m.type not in spec.dropped:
            raise DataError(path, f"record {record.id}: label {m.type!r} is not in the {spec.name} label map")
    return mentions


def load_benchmark(
    name: str,
    split: str = "test",
    *,
    data_dir: str | Path | None = None,
    max_examples: int | None = DEFAULT_MAX_EXAMPLES,
    seed: int = DEFAULT_SEED,
    stats: LoadStats | None = None,
) -> list[Record]:
    """A split of a benchmark or training source as records with natural-language types.

    Records get ids ``<name>-<split>-<index in the full split>``, ``source`` = the canonical name and
    ``types`` = the full label set (None for training sources). A half split (``spec.halves``) keeps
    its half of a fixed shuffle (seed :data:`HALF_SEED`) of its file, in file order, ids indexing the file.
    When the split has more than ``max_examples`` passages, a seeded sample of that many is kept, in file
    order."""
    spec = get_spec(name)
    records: list[Record] = []
    for path in split_paths(name, split, data_dir=data_dir):
        if not path.is_file():
            raise DataError(
                path, f"{spec.name} {split} file not found" + (f" ({spec.notes})" if spec.notes else "")
            )
        for record in load_records(path, spec.fmt, stats=stats):
            record.mentions = _map_labels(spec, path, record)
            records.append(record)
    for index, record in enumerate(records):
        record.id, record.source = f"{spec.name}-{split}-{index}", spec.name
        record.types = list(spec.types) if spec.labels is not None else None
    if split in spec.halves:
        order = random.Random(HALF_SEED).sample(range(len(records)), len(records))
        half = order[: len(order) // 2] if spec.halves[split] == 0 else order[len(order) // 2 :]
        records = [records[i] for i in sorted(half)]
    return sample_passages(records, max_examples, seed)


def sample_passages(records: list[Record], size: int | None, seed: int) -> list[Record]:
    """A seeded sample of at most ``size`` records (``None``: all), kept in file order: how every test
    set, registered or a file, is cut to ``max_examples``."""
    if size is None or len(records) <= size:
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), size))
    return [records[i] for i in keep]


def sample_path(lang: str, split: str) -> Path:
    """The repo's own small sample data (``rait`` format): ``resources/sample/{en,zh}_{train,test}.jsonl``."""
    if lang not in ("en", "zh") or split not in ("train", "test"):
        raise ValueError(f"no sample data for lang={lang!r}, split={split!r} (en/zh, train/test)")
    return Path(str(files("rait") / "resources" / "sample" / f"{lang}_{split}.jsonl"))
