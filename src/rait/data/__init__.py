"""Data: the NER file formats (:mod:`.formats`), the registry of benchmarks and training sources
(:mod:`.benchmarks`), any labelled or plain file read as a benchmark (:mod:`.file_benchmarks`), training
sources for RA-IT data and example pools (:mod:`.sources`) and label maps from dataset codes to
natural-language types (:mod:`.labels`)."""

from rait.data.benchmarks import (
    BENCHMARKS,
    TRAINING_SOURCES,
    BenchmarkSpec,
    get_spec,
    is_available,
    load_benchmark,
    sample_path,
)
from rait.data.file_benchmarks import FileBenchmark, FileSource, load_file_benchmark
from rait.data.formats import LoadStats, convert, detect_format, load_records, write_records
from rait.data.labels import LabelMap, parse_label_map
from rait.data.sources import load_source

__all__ = [
    "BENCHMARKS",
    "TRAINING_SOURCES",
    "BenchmarkSpec",
    "FileBenchmark",
    "FileSource",
    "LabelMap",
    "LoadStats",
    "convert",
    "detect_format",
    "get_spec",
    "is_available",
    "load_benchmark",
    "load_file_benchmark",
    "load_records",
    "load_source",
    "parse_label_map",
    "sample_path",
    "write_records",
]
