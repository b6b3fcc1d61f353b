#!/usr/bin/env bash
# CUDA check of rait's training and inference paths with a tiny random model (no downloads, < 5 minutes):
#   1. LoRA training on CUDA in fp32 matches the same run on CPU (losses and adapter weights, within float
#      tolerance), and trains in bf16 with auto precision (frozen base bf16, LoRA weights fp32, sdpa);
#   2. prediction on CUDA: the prefix-reusing batched predictor gives the naive path's answers, and CUDA fp32
#      answers match CPU fp32 answers; bf16 inference runs and its share of identical answers is printed.
# Usage: bash benchmarks/gpu_check.sh [OUTPUT.json]   (default results/gpu_check.json); exits non-zero on a failure.
# GPU_CHECK_DEVICE=cpu runs the same steps with the CPU standing in for the GPU (a test of this script only).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUTPUT=${1:-results/gpu_check.json}
timeout 300 "$PYTHON" - "$OUTPUT" <<'EOF'
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from rait.models import load_model
from rait.inference import PassageQuery, Predictor
from rait.records import Mention, Record
from rait.templates import build_conversation
from rait.testing import fixture_text, save_tiny_model
from rait.precision import resolve_precision
from rait.training import LOG_FILE, SUMMARY_FILE, TrainConfig, train

DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # "cpu": dry run of this script on a machine without GPU
assert DEVICE == "cpu" or torch.cuda.is_available(), "no CUDA device"
started = time.time()
name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu (dry run)"
report = {"device": name, "torch": torch.__version__, "checks": {}}
root = Path(tempfile.mkdtemp(prefix="gpu_check."))
model_dir = save_tiny_model(root / "model")
texts = fixture_text()[:12]
records = [Record(f"r{i}", t, [Mention(t.split()[0], "person")], ["person", "location"]) for i, t in enumerate(texts)]
(root / "conv.jsonl").write_text(
    "".join(json.dumps(build_conversation(r).to_sharegpt()) + "\n" for r in records), encoding="utf-8"
)


def run(name: str, precision: str, cpu: bool = False, dropout: float = 0.0) -> Path:
    """Train the tiny model for 8 steps (on CUDA, or on the CPU in a process that cannot see the GPU)."""
    options = dict(
        data=[str(root / "conv.jsonl")], output_dir=str(root / name), model=str(model_dir), max_steps=8,
        batch_size=4, per_device_batch_size=2, learning_rate=1e-2, warmup_ratio=0.0, lora_r=4, lora_alpha=8,
        lora_dropout=dropout, logging_steps=1, save_steps=100, precision=precision,
    )
    if cpu:
        code = "import json, sys; from rait.training import TrainConfig, train; train(TrainConfig(**json.loads(sys.argv[1])))"
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        subprocess.run([sys.executable, "-c", code, json.dumps(options)], check=True, env=env)
        return root / name
    return train(TrainConfig(**options))


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / LOG_FILE).read_text().splitlines()) if "loss" in r]


cuda_fp32 = run("cuda_fp32", "fp32")
cuda_auto = run("cuda_auto", "auto", dropout=0.05)  # bf16 autocast, rait.lora_dropout on the device
cpu_fp32 = run("cpu_fp32", "fp32", cpu=True)
a, b = load_file(cuda_fp32 / "adapter_model.safetensors"), load_file(cpu_fp32 / "adapter_model.safetensors")
scale = max(b[k].abs().max().item() for k in b)
max_diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a) / scale  # relative to the weights
loss_diff = max(abs(x - y) for x, y in zip(losses(cuda_fp32), losses(cpu_fp32), strict=True))
summary = json.loads((cuda_auto / SUMMARY_FILE).read_text())
auto_weights = load_file(cuda_auto / "adapter_model.safetensors")
report["checks"]["train"] = {
    "cuda_fp32_vs_cpu_fp32_max_adapter_diff_relative": max_diff,
    "cuda_fp32_vs_cpu_fp32_max_loss_diff": loss_diff,
    "auto_precision_on_cuda": summary["precision"],
    "auto_adapter_dtypes": sorted({str(v.dtype) for v in auto_weights.values()}),
    "auto_losses": losses(cuda_auto),
}
assert loss_diff < 1e-3 and max_diff < 1e-2, report["checks"]["train"]
assert summary["precision"] == resolve_precision("auto", DEVICE), summary
assert report["checks"]["train"]["auto_adapter_dtypes"] == ["torch.float32"]
assert losses(cuda_auto)[-1] < losses(cuda_auto)[0], losses(cuda_auto)

queries = [PassageQuery(t, ("person", "location", "organization"), (), "en") for t in texts]
answers = {}
runs = (("cuda_fp32", DEVICE, torch.float32), ("cuda_bf16", DEVICE, torch.bfloat16), ("cpu_fp32", "cpu", torch.float32))
for name, device, dtype in runs:
    model, tokenizer = load_model(str(cuda_fp32), device=device, dtype=dtype)
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    predictor = Predictor(model, tokenizer, max_new_tokens=16, batch_size=8)
    answers[name] = predictor.answer_many(queries)
    if name == "cuda_fp32":
        naive = [predictor.answer_naive(q.text, q.types) for q in queries]
        assert naive == answers[name], "prefix reuse differs from the naive path on CUDA"


def share(x, y):
    pairs = [(p, q) for a, b in zip(answers[x], answers[y], strict=True) for p, q in zip(a, b, strict=True)]
    return sum(p == q for p, q in pairs) / len(pairs)


report["checks"]["predict"] = {
    "cuda_fast_equals_naive": True,
    "identical_cuda_fp32_vs_cpu_fp32": share("cuda_fp32", "cpu_fp32"),
    "identical_cuda_bf16_vs_cuda_fp32": share("cuda_bf16", "cuda_fp32"),
}
assert report["checks"]["predict"]["identical_cuda_fp32_vs_cpu_fp32"] >= 0.9, report["checks"]["predict"]
report["seconds"] = round(time.time() - started, 1)
Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
Path(sys.argv[1]).write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
print("GPU CHECK PASSED")
EOF
