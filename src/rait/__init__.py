"""rait: Retrieval-Augmented Instruction Tuning for open named entity recognition."""

from rait.records import Conversation, Mention, QueryPrediction, Record, Turn

__version__ = "0.1.0"

__all__ = ["Conversation", "Mention", "QueryPrediction", "Record", "Turn", "__version__"]
