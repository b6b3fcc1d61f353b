"""Data: file formats, the benchmark registry, benchmark files, training sources and label maps."""
