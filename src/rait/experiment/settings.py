"""Which experiment settings are about execution (memory, speed, checkpoints, logs), not results: the
done-markers (:mod:`.runner`) and the adapter store's keys (:mod:`.adapters`) leave them out."""

# Settings that change how a step runs (memory, speed, checkpoints, logs) but not what it computes: editing
# them, e.g. a smaller micro-batch after running out of memory, leaves finished steps done. The Trainer
# normalises the loss over the whole batch's answer tokens, so the micro-batch size does not change the
# objective; results differ only by float rounding and dropout draws.
EXECUTION_SETTINGS = {
    "hyper": (
        "per_device_batch_size",
        "gradient_checkpointing",
        "save_steps",
        "save_total_limit",
        "logging_steps",
    ),
    "predict": ("batch_size", "chunk_size"),
}


def execution_settings(key: str, value: dict) -> tuple[str, ...]:
    """The execution settings of section ``key`` (``hyper``, ``predict``) given its ``value``: with a
    validation hold-out ``save_steps`` is a result setting (validation picks a checkpoint)."""
    names = EXECUTION_SETTINGS[key]
    if key == "hyper" and value.get("validation_fraction", 0) > 0:
        return tuple(name for name in names if name != "save_steps")
    return names
