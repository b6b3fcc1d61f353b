"""The training log: Trainer callbacks (``train_log.jsonl`` rows, rich progress bar), the loss plot and the
mean loss of a (resumed) run."""

from __future__ import annotations

from pathlib import Path

from rait.console import progress_bar
from rait.fileio import JsonlAppender, read_jsonl, write_jsonl

LOG_FILE = "train_log.jsonl"
LOSS_PLOT = "loss_curve.png"


def _callbacks(log_path: Path, resume_step: int | None):
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """Appends every Trainer log row (loss, lr, grad norm, ...) to train_log.jsonl."""

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            rows = [
                r for r in _log_rows(log_path) if resume_step is not None and r.get("step", 0) <= resume_step
            ]
            write_jsonl(log_path, rows)  # a resumed run drops rows logged after its checkpoint
            self.appender = JsonlAppender(log_path)

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or state.global_step >= state.max_steps:
                control.should_log = True  # the log then covers every step up to each checkpoint (run_loss)
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                self.appender.append({"step": state.global_step, "epoch": round(state.epoch or 0, 4), **logs})

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.appender.close()

    class RichProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = progress_bar()
                self.progress.start()
                self.task = self.progress.add_task(
                    "training", total=state.max_steps, completed=state.global_step
                )

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and "loss" in logs:
                self.progress.update(self.task, description=f"training, loss {logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress.stop()

    return [JsonlLog(), RichProgress()]


def _log_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    JsonlAppender(path).close()  # drop a torn last line
    return [row for _, row in read_jsonl(path)]


def plot_loss(log_path: str | Path, output: str | Path) -> Path | None:
    """Training (and validation) loss against optimizer step, from a train_log.jsonl; None when nothing
    was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_rows = _log_rows(Path(log_path))
    rows = [r for r in all_rows if "loss" in r]
    if not rows:
        return None
    evals = [r for r in all_rows if "eval_loss" in r]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    marker = "." if len(rows) < 50 else None
    axes.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker=marker, label="training")
    if evals:
        axes.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], marker="o", label="validation")
        axes.legend()
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("training loss")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    output = Path(output)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def run_loss(log_path: Path) -> float | None:
    """The mean training loss over every step of a run, resumed or not, from its train_log.jsonl (each
    logged loss is the mean over the steps since the previous row; rows are forced at checkpoints and at
    the last step, so the log covers the whole run)."""
    total, previous = 0.0, 0
    for row in _log_rows(log_path):
        if "loss" in row:
            total += row["loss"] * (row["step"] - previous)
            previous = row["step"]
    return total / previous if previous else None
