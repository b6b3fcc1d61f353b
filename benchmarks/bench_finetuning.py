"""Full fine-tuning against LoRA: seconds per optimizer step and peak memory of ``rait train`` on real
Pile-NER conversations, with the built-in model's training settings.

    python benchmarks/bench_finetuning.py [--steps 3] [--conversations 64] [--output FILE.json]

Data: vanilla conversations of the first ``--conversations`` passages of a seeded sample of the Pile-NER
subset (``rait build-data pile_ner_subset --method vanilla``, the paper's negatives), all variants on the
same file. Settings as ``configs/experiments/cpu_en_builtin.yaml``: effective batch 8 in micro-batches of 1,
cutoff 2,048 tokens, the chat template's system prompt, precision ``auto``; LoRA r 8 / alpha 16 / dropout 0
on every linear layer; full fine-tuning trains every weight (fp32 master weights, AdamW).

Each variant runs in its own process (its peak resident memory is its own) and trains ``--steps`` + 1
optimizer steps; the first is a warm-up and is not timed (seconds per step: from the end of step 1 to the
end of the last). Writes the figures as JSON (default ``results/bench_finetuning.json``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("lora", "full")
HYPER = {
    "batch_size": 8,
    "per_device_batch_size": 1,
    "learning_rate": 1e-3,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "max_length": 2048,
    "system_prompt": "default",
    "save_steps": 1000,
    "logging_steps": 1,
}


def worker(variant: str, data: Path, steps: int, output: Path) -> None:
    from transformers import TrainerCallback

    from rait.training import TrainConfig, train

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    hyper = dict(HYPER, learning_rate=5e-5) if variant == "full" else HYPER
    config = TrainConfig(
        data=[str(data)],
        output_dir=str(output.parent / variant),
        max_steps=steps + 1,
        finetuning=variant,
        **hyper,
    )
    started = time.perf_counter()
    out = train(config, callbacks=[Clock()])
    summary = json.loads((out / "train_summary.json").read_text())
    weights = out / ("model.safetensors" if variant == "full" else "adapter_model.safetensors")
    result = {
        "seconds_per_step": (ends[-1] - ends[0]) / (len(ends) - 1),
        "step_seconds": [b - a for a, b in zip(ends, ends[1:], strict=False)],
        "first_step_seconds": ends[0] - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "precision": summary["precision"],
        "saved_weights_mb": weights.stat().st_size / 1e6,
        "learning_rate": hyper["learning_rate"],
    }
    output.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per variant")
    parser.add_argument("--conversations", type=int, default=64)
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "bench_finetuning.json")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.steps, args.result)
        return
    from rait.build_data import BuildConfig, build_data

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        build_data(
            BuildConfig(
                "pile_ner_subset", data, method="vanilla", size=args.conversations, show_progress=False
            )
        )
        variants = {}
        for variant in VARIANTS:
            result = Path(tmp) / f"{variant}.json"
            command = [sys.executable, __file__, "--worker", variant, "--data", str(data)]
            command += ["--steps", str(args.steps), "--result", str(result)]
            done = subprocess.run(
                command, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True
            )
            if done.returncode:
                raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
            variants[variant] = json.loads(result.read_text())
            v = variants[variant]
            print(
                f"{variant:>5}: {v['seconds_per_step']:.1f} s/step, peak RSS {v['peak_rss_mb']:.0f} MB, "
                f"saved weights {v['saved_weights_mb']:.1f} MB ({v['precision']})"
            )
    report = {
        "command": "python benchmarks/bench_finetuning.py "
        f"--steps {args.steps} --conversations {args.conversations}",
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU",
        "settings": HYPER,
        "timed_steps_per_variant": args.steps,
        "variants": variants,
        "full_over_lora_seconds_per_step": variants["full"]["seconds_per_step"]
        / variants["lora"]["seconds_per_step"],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"full / LoRA seconds per step: {report['full_over_lora_seconds_per_step']:.2f}; "
        f"written to {args.output}"
    )


if __name__ == "__main__":
    main()
