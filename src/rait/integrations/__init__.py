"""rait inside other libraries' pipelines (each behind its own extra): :mod:`rait.integrations.spacy`.

Integrations sit above :mod:`rait.api` and use only the public :class:`rait.NER` facade."""
