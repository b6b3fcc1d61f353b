"""rait inside other libraries' pipelines (each behind its own extra): :mod:`rait.integrations.spacy`.

Integrations sit above :mod:`rait.api` and use only the public :class:`rait.NER` facade."""

from rait.errors import RaitError


def require(module: str, extra: str):
    """Import ``module``, or raise one line naming the pip command of the rait extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RaitError(f"this needs {module.split('.')[0]}: pip install 'rait[{extra}]'") from None
