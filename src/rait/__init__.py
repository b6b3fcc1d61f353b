"""rait: Retrieval-Augmented Instruction Tuning for open named entity recognition."""

from rait import deprecated
from rait.records import Conversation, Mention, QueryPrediction, Record, Turn

deprecated.install()  # module paths from before the stage packages, with a DeprecationWarning

__version__ = "0.1.0"

__all__ = ["NER", "Conversation", "Mention", "QueryPrediction", "Record", "Turn", "__version__"]


def __getattr__(name: str):
    # Imported lazily: the predictor pulls in torch and transformers, which plain data work does not need.
    if name == "NER":
        from rait.api import NER

        return NER
    raise AttributeError(f"module 'rait' has no attribute {name!r}")
