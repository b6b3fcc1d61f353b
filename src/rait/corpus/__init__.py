"""Extraction over corpora too big for one process: :mod:`rait.corpus.ray` (Ray Data, ``pip install
'rait[ray]'``)."""
