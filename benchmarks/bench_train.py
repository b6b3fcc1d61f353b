"""Training-throughput benchmark: ``rait train`` against bare PyTorch loops, the previous ``rait train`` and
trl's ``SFTTrainer``, LoRA-tuning SmolLM2-135M-Instruct on the same RA-IT conversations, side by side.

    python benchmarks/bench_train.py [--steps 3] [--rounds 2] [--old-src DIR] [--output FILE.json]

Data: RA-IT conversations (k=2 retrieved examples, 2 negative types) built from Pile-NER passages of the
shared data (``--source pile-ner``, default) or the repo's sample passages, keeping those of at least
``--seq-len`` tokens and truncating them to it: every optimizer step is one sequence of exactly
``--seq-len`` (1,024) tokens, micro-batch 1, no accumulation, LoRA r 16 / alpha 32 / dropout 0.05 on
q/k/v/o/gate/up/down, AdamW, gradient clipping 1.0, loss on assistant tokens only.

Variants, each in its own process (so its peak resident memory is its own):

- ``bare_fp32`` / ``bare_bf16``: a plain loop (forward with labels, backward, clip, AdamW step); bf16 loads
  the frozen base weights in bf16 and runs the forward under bf16 autocast, exactly as ``rait train
  --precision bf16`` sets the model up;
- ``old_rait``: ``rait.training.train`` of an older checkout (``--old-src``, default the f87dffb worktree at
  ../h12-old/src; fp32, the only CPU precision it had);
- ``rait_fp32`` / ``rait_bf16``: this checkout's ``rait.training.train`` with ``--precision fp32`` / ``bf16``;
- ``trl_bf16``: trl's ``SFTTrainer`` with ``assistant_only_loss`` on the same conversations (ChatML with
  generation marks, no system prompt: the same tokens), bf16, the same LoRA and optimizer settings,
  gradient checkpointing off as in rait; otherwise trl's defaults.

Each process takes one untimed warm-up step, then times ``--steps`` optimizer steps (end of step to end of
step, so data loading, logging and every per-step cost of a framework count). ``--rounds`` rounds run every
variant once each, in alternating order, so that a loaded, shared machine slows all variants alike.
Achieved FLOP/s counts the model FLOPs of a step as 2 x forward (the frozen weights need input gradients
only; LoRA's small matmuls and the optimizer are ignored) with the forward's matmuls at every position,
including the vocabulary projection, and causal attention; it is compared with the machine's bf16 matmul
peak, measured in this run (best of repeated 2048 x 2048 bf16 matmuls on all threads)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("bare_bf16", "bare_fp32", "old_rait", "rait_fp32", "rait_bf16", "trl_bf16")
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LR = 2e-4
TRL_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# ------------------------------------------------------------------------------------------ parent process


def make_data(source: str, seq_len: int, count: int, path: Path) -> int:
    """Write ``count`` RA-IT conversations of at least ``seq_len`` tokens, with assistant tokens within the
    first ``seq_len``, to ``path``; returns how many candidates were looked at."""
    from rait.data.benchmarks import data_dir, sample_path
    from rait.data.formats import load_records
    from rait.models import load_tokenizer
    from rait.templates import NegativeTypeSampler, training_conversation
    from rait.training import encode_conversations

    if source == "sample":
        records = load_records(sample_path("en", "train"))
    else:
        root = data_dir()
        if root is None:
            raise SystemExit("--source pile-ner needs the shared data ($RAIT_DATA_DIR or ../shared/data)")
        records = load_records(root / "train/pile_ner_subset/passages_bio.txt")
    tokenizer = load_tokenizer()
    sampler = NegativeTypeSampler.from_records(records)
    rng = random.Random(0)
    order = rng.sample(range(len(records)), len(records))
    kept = []
    for looked, index in enumerate(order, 1):
        record = records[index]
        examples = rng.sample([r for r in records if r.id != record.id], 2)
        conversation = training_conversation(record, sampler, examples)
        conversation.id = f"{record.id}-{looked}"
        encoded = encode_conversations(tokenizer, [conversation], seq_len).examples  # labels within seq_len
        if encoded and len(encoded[0]["input_ids"]) == seq_len:
            kept.append(conversation.to_sharegpt())
        if len(kept) == count:
            break
    else:
        raise SystemExit(f"only {len(kept)} conversations of {seq_len}+ tokens in {source}")
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in kept), encoding="utf-8")
    return looked


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 12) -> float:
    """Best FLOP/s of a ``size``-square matmul in ``dtype_name`` on all threads."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def step_flops(seq_len: int) -> float:
    """Model FLOPs of one training step on one ``seq_len`` sequence: 2 x forward (see the module doc)."""
    from transformers import AutoConfig

    from rait.models import resolve_model_path

    c = AutoConfig.from_pretrained(resolve_model_path(None))
    head = c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads * head
    per_layer = 2 * c.hidden_size * (c.hidden_size + 2 * kv) + 2 * c.hidden_size * c.hidden_size  # q,k,v,o
    per_layer += 3 * 2 * c.hidden_size * c.intermediate_size  # gate, up, down
    per_token = c.num_hidden_layers * per_layer + 2 * c.hidden_size * c.vocab_size  # + vocabulary projection
    attention = (
        c.num_hidden_layers * 2 * 2 * c.hidden_size * seq_len * (seq_len + 1) / 2
    )  # QK^T and AV, causal
    return 2 * (per_token * seq_len + attention)


def run_worker(variant: str, args, data: Path, workdir: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    src = args.old_src if variant == "old_rait" else ROOT / "src"
    env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    result = workdir / f"{variant}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--data", str(data)]
    command += ["--steps", str(args.steps), "--seq-len", str(args.seq_len), "--output", str(result)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def summarise(runs: list[dict], seq_len: int, flops: float, peak: float) -> dict:
    seconds = [s for run in runs for s in run["step_seconds"]]
    tokens_per_second = seq_len * len(seconds) / sum(seconds)
    return {
        "tokens_per_second": tokens_per_second,
        "tokens_per_second_per_round": [
            seq_len * len(r["step_seconds"]) / sum(r["step_seconds"]) for r in runs
        ],
        "step_seconds": seconds,
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "achieved_flops": flops * len(seconds) / sum(seconds),
        "fraction_of_bf16_peak": flops * len(seconds) / sum(seconds) / peak,
        "details": runs[0].get("details", {}),
    }


def main_parent(args) -> None:
    import torch
    from rich.console import Console
    from rich.table import Table

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="bench_train."))
    data = workdir / "conversations.jsonl"
    make_data(args.source, args.seq_len, args.steps + 1, data)
    flops = step_flops(args.seq_len)
    peaks = {"bfloat16": [matmul_peak("bfloat16")], "float32": [matmul_peak("float32")]}
    variants = [v for v in VARIANTS if v in args.variants]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    started = time.time()
    for round_index in range(args.rounds):
        for variant in variants if round_index % 2 == 0 else variants[::-1]:
            run = run_worker(variant, args, data, workdir)
            runs[variant].append(run)
            rate = args.seq_len * len(run["step_seconds"]) / sum(run["step_seconds"])
            console.print(
                f"round {round_index + 1} {variant}: {rate:.1f} tokens/s, {run['peak_rss_mb']:.0f} MB"
            )
    peaks["bfloat16"].append(matmul_peak("bfloat16"))
    peaks["float32"].append(matmul_peak("float32"))
    peak = max(peaks["bfloat16"])
    results = {v: summarise(runs[v], args.seq_len, flops, peak) for v in variants}

    def ratio(a: str, b: str) -> float | None:
        return (
            results[a]["tokens_per_second"] / results[b]["tokens_per_second"]
            if {a, b} <= set(results)
            else None
        )

    report = {
        "command": "python benchmarks/bench_train.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU, torch {torch.__version__}",
        "load_average_at_end": os.getloadavg(),
        "wall_seconds": round(time.time() - started, 1),
        "model": "SmolLM2-135M-Instruct, LoRA r=16 alpha 32 dropout 0.05 on q/k/v/o/gate/up/down",
        "sequence_tokens": args.seq_len,
        "timed_steps_per_variant": args.steps * args.rounds,
        "model_flops_per_step": flops,
        "matmul_peak_flops": {k: max(v) for k, v in peaks.items()},
        "ratios": {
            "rait_bf16 / bare_bf16": ratio("rait_bf16", "bare_bf16"),
            "rait_bf16 / old_rait": ratio("rait_bf16", "old_rait"),
            "rait_fp32 / old_rait": ratio("rait_fp32", "old_rait"),
            "rait_bf16 / trl_bf16": ratio("rait_bf16", "trl_bf16"),
            "bare_bf16 / bare_fp32": ratio("bare_bf16", "bare_fp32"),
        },
        "variants": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    table = Table(
        title=f"LoRA training, one {args.seq_len}-token sequence per step, "
        f"{report['timed_steps_per_variant']} timed steps each"
    )
    for column in ("variant", "tokens/s", "per round", "peak RSS", "FLOP/s", "of bf16 peak"):
        table.add_column(column)
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['tokens_per_second']:.1f}",
            " ".join(f"{x:.0f}" for x in r["tokens_per_second_per_round"]),
            f"{r['peak_rss_mb']:.0f} MB",
            f"{r['achieved_flops'] / 1e9:.1f} G",
            f"{100 * r['fraction_of_bf16_peak']:.1f}%",
        )
    console.print(table)
    console.print(f"bf16 matmul peak {peak / 1e9:.0f} GFLOP/s (fp32 {max(peaks['float32']) / 1e9:.0f})")
    for name, value in report["ratios"].items():
        if value is not None:
            console.print(f"{name}: {value:.2f}x")
    console.print(f"written to {args.output}")


# ------------------------------------------------------------------------------------------ worker process


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timer_callback(times: list[float]):
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    return StepTimes()


def worker_rait(data: Path, steps: int, seq_len: int, precision: str | None) -> dict:
    from rait.training import TrainConfig, train

    options = dict(
        data=[str(data)],
        max_steps=steps + 1,
        batch_size=1,
        per_device_batch_size=1,
        learning_rate=LR,
        lora_r=LORA["r"],
        lora_alpha=LORA["lora_alpha"],
        lora_dropout=LORA["lora_dropout"],
        max_length=seq_len,
        save_steps=10_000,
        logging_steps=1,
    )
    if precision:
        options["precision"] = precision
    times: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        train(TrainConfig(output_dir=str(Path(out) / "run"), **options), callbacks=[_timer_callback(times)])
    return {"step_seconds": [b - a for a, b in zip(times, times[1:], strict=False)]}


def _plain_model(bf16: bool):
    import torch
    from transformers import AutoModelForCausalLM

    from rait.models import resolve_model_path

    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_path(None), dtype=torch.bfloat16 if bf16 else torch.float32
    )
    model.config.use_cache = False
    return model


def _lora_model(bf16: bool):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(task_type="CAUSAL_LM", target_modules=TARGETS, **LORA)
    return get_peft_model(_plain_model(bf16), config)


def worker_bare(data: Path, steps: int, seq_len: int, bf16: bool) -> dict:
    import contextlib

    import torch

    from rait.models import load_tokenizer
    from rait.training import PaddingCollator, encode_conversations, load_conversations

    torch.manual_seed(0)
    tokenizer = load_tokenizer()
    examples = encode_conversations(tokenizer, load_conversations([data]), seq_len).examples
    collate = PaddingCollator(tokenizer.pad_token_id)
    model = _lora_model(bf16)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR)
    times = []
    for example in examples[: steps + 1]:
        batch = collate([example])
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
    return {"step_seconds": [b - a for a, b in zip(times, times[1:], strict=False)]}


def worker_trl(data: Path, steps: int, seq_len: int) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from rait.models import load_tokenizer
    from rait.training import load_conversations

    tokenizer = load_tokenizer()
    tokenizer.chat_template = TRL_TEMPLATE
    rows = [
        {"messages": [{"role": t.role, "content": t.content} for t in c.turns]}
        for c in load_conversations([data])
    ]
    times: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            max_steps=steps + 1,
            per_device_train_batch_size=1,
            gradient_accumulation_steps=1,
            learning_rate=LR,
            max_length=seq_len,
            assistant_only_loss=True,
            bf16=True,
            use_cpu=True,
            gradient_checkpointing=False,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=42,
        )
        trainer = SFTTrainer(
            model=_plain_model(True),  # trl adds the LoRA adapter from peft_config
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=LoraConfig(task_type="CAUSAL_LM", target_modules=TARGETS, **LORA),
            callbacks=[_timer_callback(times)],
        )
        trainer.train()
    return {
        "step_seconds": [b - a for a, b in zip(times, times[1:], strict=False)],
        "details": {"trl": __import__("trl").__version__},
    }


def main_worker(args) -> None:
    variant = args.worker
    if variant.startswith("bare_"):
        result = worker_bare(args.data, args.steps, args.seq_len, bf16=variant == "bare_bf16")
    elif variant == "trl_bf16":
        result = worker_trl(args.data, args.steps, args.seq_len)
    else:
        precision = {"old_rait": None, "rait_fp32": "fp32", "rait_bf16": "bf16"}[variant]
        result = worker_rait(args.data, args.steps, args.seq_len, precision)
    result["peak_rss_mb"] = _peak_rss_mb()
    args.output.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per variant and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each runs every variant once")
    parser.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence (= per step)")
    parser.add_argument("--source", choices=("pile-ner", "sample"), default="pile-ner")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--old-src", type=Path, default=ROOT.parent / "h12-old" / "src")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "bench_train.json")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        main_worker(args)
    else:
        main_parent(args)


if __name__ == "__main__":
    main()
