"""Example retrieval for RA-IT: the example pool, BM25 and sentence embedders."""
