"""Training-throughput benchmark: rait's batching (length-grouped batches, dynamic padding, loss on
assistant tokens only) against a plain baseline (random batches padded to the longest conversation of the
dataset, loss on every token), LoRA-tuning SmolLM2-135M-Instruct.

    python benchmarks/bench_train.py [--steps 2] [--source sample|pile-ner] [--output FILE.json]

Data: 200 RA-IT conversations (k=2 examples, 2 negative types), from the repo's sample records (en + zh,
default) or from the Pile-NER subset of the shared data. Examples are drawn at random (seeded): only the
conversation shape matters for throughput, not retrieval quality. Both variants use the default training
config (effective batch 8 = 2 per micro-batch x 4 accumulation, LoRA r=16 on all projections, AdamW) and
the same training loop, model and optimizer; only batching and labels differ. Each variant times
``--steps`` optimizer steps taken at evenly spaced positions of its first epoch (rait orders the longest
batch first, so the first steps alone would be unrepresentative), after one small untimed warm-up step.
The variants' steps alternate (rait first, then baseline first, ...) so that a shared, loaded machine
slows both alike. Padding figures are exact for the whole epoch; the projected epoch time is its computed
(padded) tokens over the measured computed tokens/s. Peak memory is the process's maximum resident set
size: both variants' epochs hold a micro-batch of the dataset's longest conversations, so their peaks
match."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from rait.benchmarks import data_dir, sample_path
from rait.chat import IGNORE_INDEX
from rait.formats import load_records
from rait.records import Conversation
from rait.templates import NegativeTypeSampler, training_conversation
from rait.train import LengthGroupedSampler, PaddingCollator, TrainConfig, encode_conversations

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("rait", "baseline")


def ra_it_conversations(source: str, n: int = 200, k: int = 2, seed: int = 0) -> list[Conversation]:
    """``n`` RA-IT training conversations, cycling through the source passages with fresh examples."""
    if source == "sample":
        pools = {lang: load_records(sample_path(lang, "train")) for lang in ("en", "zh")}
    else:
        root = data_dir()
        if root is None:
            raise SystemExit("--source pile-ner needs the shared data ($RAIT_DATA_DIR or ../shared/data)")
        pools = {"en": load_records(root / "train/pile_ner_subset/passages_bio.txt")}
    rng = random.Random(seed)
    samplers = {lang: NegativeTypeSampler.from_records(records) for lang, records in pools.items()}
    items = [(lang, r) for lang, records in pools.items() for r in records]
    rng.shuffle(items)
    conversations = []
    for i in range(n):
        lang, record = items[i % len(items)]
        others = [r for r in pools[lang] if r.id != record.id]
        examples = rng.sample(others, k)
        conversation = training_conversation(record, samplers[lang], examples, lang=lang)
        conversation.id = f"{record.id}-{i}"
        conversations.append(conversation)
    return conversations


def epoch_batches(variant: str, lengths: list[int], config: TrainConfig) -> list[list[int]]:
    """The first epoch's micro-batches (lists of example indices) of a variant."""
    if variant == "rait":
        order = list(LengthGroupedSampler(lengths, config.batch_size, config.seed))
    else:
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(config.seed)).tolist()
    size = config.per_device_batch_size
    return [order[i : i + size] for i in range(0, len(order), size)]


def collate(variant: str, examples: list[dict], batch: list[int], pad_id: int, longest: int) -> dict:
    features = [examples[i] for i in batch]
    if variant == "rait":
        return PaddingCollator(pad_id)(features)
    ids = torch.full((len(features), longest), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, feature in enumerate(features):
        ids[row, : len(feature["input_ids"])] = torch.tensor(feature["input_ids"])
        mask[row, : len(feature["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, IGNORE_INDEX)}


@dataclass
class Plan:
    """One variant's first epoch: micro-batches, exact padding figures, and the optimizer steps to time."""

    variant: str
    batches: list[list[int]]
    computed_tokens: int
    loss_tokens: int
    timed_steps: list[int]
    seconds: list[float] = field(default_factory=list)
    timed_real_tokens: int = 0
    timed_computed_tokens: int = 0


def make_plan(variant: str, examples: list[dict], config: TrainConfig, steps: int) -> Plan:
    lengths = [len(e["input_ids"]) for e in examples]
    batches = epoch_batches(variant, lengths, config)
    if variant == "rait":
        computed = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        loss_tokens = sum(x != IGNORE_INDEX for e in examples for x in e["labels"])
    else:
        computed, loss_tokens = len(examples) * max(lengths), sum(lengths)
    per_epoch = len(batches) // config.gradient_accumulation_steps()
    timed = sorted({int((s + 0.5) * per_epoch / steps) for s in range(steps)})
    return Plan(variant, batches, computed, loss_tokens, timed)


def timed_step(model, optimizer, plan: Plan, step: int, examples, pad_id: int, config: TrainConfig) -> None:
    """One optimizer step (forward + backward of each micro-batch, clip, AdamW), timed into ``plan``."""
    accumulation = config.gradient_accumulation_steps()
    longest = max(len(e["input_ids"]) for e in examples)
    micro = plan.batches[step * accumulation : (step + 1) * accumulation]
    inputs = [collate(plan.variant, examples, b, pad_id, longest) for b in micro]
    n_labels = sum(int((x["labels"] != IGNORE_INDEX).sum()) for x in inputs)
    start = time.perf_counter()
    for x in inputs:
        logits = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1),
            x["labels"][:, 1:].flatten(),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        (loss / n_labels).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad()
    plan.seconds.append(time.perf_counter() - start)
    plan.timed_real_tokens += sum(int(x["attention_mask"].sum()) for x in inputs)
    plan.timed_computed_tokens += sum(x["input_ids"].numel() for x in inputs)


def summary(plan: Plan, examples: list[dict], config: TrainConfig) -> dict:
    seconds = sum(plan.seconds)
    computed_per_second = plan.timed_computed_tokens / seconds
    real = sum(len(e["input_ids"]) for e in examples)
    return {
        "timed_steps": plan.timed_steps,
        "step_seconds": [round(s, 2) for s in plan.seconds],
        "seconds_per_step": seconds / len(plan.seconds),
        "non_padding_tokens_per_second": plan.timed_real_tokens / seconds,
        "computed_tokens_per_second": computed_per_second,
        "timed_non_padding_tokens": plan.timed_real_tokens,
        "timed_computed_tokens": plan.timed_computed_tokens,
        "epoch": {
            "conversations": len(examples),
            "optimizer_steps": len(plan.batches) // config.gradient_accumulation_steps(),
            "non_padding_tokens": real,
            "computed_tokens": plan.computed_tokens,
            "padding_fraction": 1 - real / plan.computed_tokens,
            "loss_tokens": plan.loss_tokens,
            "projected_seconds": plan.computed_tokens / computed_per_second,
        },
    }


def run(steps: int, source: str) -> dict:
    """Time both variants, alternating which goes first at each step, on one model and optimizer."""
    from peft import LoraConfig, get_peft_model

    from rait.models import load_model

    torch.manual_seed(0)
    config = TrainConfig()
    model, tokenizer = load_model(dtype=torch.float32, device="cpu")
    data = encode_conversations(tokenizer, ra_it_conversations(source), config.max_length, config.length_rule)
    examples = data.examples
    plans = {v: make_plan(v, examples, config, steps) for v in VARIANTS}
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
    )
    model = get_peft_model(model, lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    warm = torch.tensor([examples[0]["input_ids"][:64]])
    model(input_ids=warm, labels=warm).loss.backward()
    optimizer.zero_grad()
    for index in range(len(plans["rait"].timed_steps)):
        order = VARIANTS if index % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            plan = plans[variant]
            timed_step(
                model, optimizer, plan, plan.timed_steps[index], examples, tokenizer.pad_token_id, config
            )
    return {v: summary(plans[v], examples, config) for v in VARIANTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps timed per variant")
    parser.add_argument("--source", choices=("sample", "pile-ner"), default="sample")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "bench_train.json")
    args = parser.parse_args()

    results = run(args.steps, args.source)
    ours, base = results["rait"], results["baseline"]
    report = {
        "command": "python benchmarks/bench_train.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU, torch {torch.__version__}",
        "model": "SmolLM2-135M-Instruct (fp32), LoRA r=16 on q/k/v/o/gate/up/down",
        "source": args.source,
        "speedup_non_padding_tokens_per_second": ours["non_padding_tokens_per_second"]
        / base["non_padding_tokens_per_second"],
        "projected_epoch_speedup": base["epoch"]["projected_seconds"] / ours["epoch"]["projected_seconds"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "variants": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    table = Table(title=f"LoRA training throughput, {args.steps} timed optimizer steps per variant")
    for column in (
        "variant",
        "s/step",
        "non-pad tok/s",
        "computed tok/s",
        "epoch padding",
        "projected epoch",
    ):
        table.add_column(column)
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['seconds_per_step']:.1f}",
            f"{r['non_padding_tokens_per_second']:.1f}",
            f"{r['computed_tokens_per_second']:.1f}",
            f"{100 * r['epoch']['padding_fraction']:.1f}%",
            f"{r['epoch']['projected_seconds'] / 60:.1f} min",
        )
    console = Console()
    console.print(table)
    console.print(
        f"rait / baseline: {report['speedup_non_padding_tokens_per_second']:.2f}x non-padding tokens/s, "
        f"{report['projected_epoch_speedup']:.2f}x projected epoch time; "
        f"peak RSS {report['peak_rss_mb']:.0f} MB; written to {args.output}"
    )


if __name__ == "__main__":
    main()
