"""rait: Retrieval-Augmented Instruction Tuning for open named entity recognition."""

from rait.records import Conversation, Mention, Record, Turn

__version__ = "0.1.0"

__all__ = ["Conversation", "Mention", "Record", "Turn", "__version__"]
