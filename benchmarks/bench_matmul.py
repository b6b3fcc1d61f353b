"""The CPU's bf16 matrix-product speed at the shapes of SmolLM2-135M (the built-in model's base), for the
speed issue's arithmetic: GFLOP/s of ``F.linear`` for a prompt (3,000 tokens) and for decoding steps (1-90
rows), one decoder layer's seven projections run separately against fused (q/k/v in one product,
gate/up in one), with whether the fused outputs are identical, and the 30 layers' projections of a
decoding step (distinct weights, streamed from memory as in the model) at 1-47 rows in bf16, bf16 with
packed weights (:func:`rait.inference.packing.pack_linears`), fp32 and with int8 weights
(``torch.ops.aten._weight_int8pack_mm``, per-channel scales, bf16 activations), in GB/s of weights read;
and whether packed layers give ``F.linear``'s exact results at the row counts of decoding passes (1 to
:data:`rait.inference.packing.PACK_ROWS`) and of prompts (80 to 700) for each of the model's weight shapes.

    python benchmarks/bench_matmul.py [--threads 1 2]

Prints the figures and writes ``results/bench_matmul.json``. Run it alone: it measures the machine."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rait.inference.packing import PACK_ROWS, pack_linears

ROOT = Path(__file__).resolve().parent.parent
HIDDEN, KV, FFN, VOCAB = 576, 192, 1536, 49152  # SmolLM2-135M
PRODUCTS = [(3000, HIDDEN, FFN), (3000, FFN, HIDDEN), (90, HIDDEN, FFN), (8, HIDDEN, FFN), (1, HIDDEN, VOCAB)]
LAYER_ROWS = (1, 5, 20, 90)
LAYERS, STACK_ROWS = 30, (1, 5, 47)
KINDS = ("bf16", "bf16_packed", "fp32", "int8")


def seconds(call, repeats: int) -> float:
    for _ in range(3):
        call()
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - started) / repeats


def products() -> list[dict]:
    found = []
    for rows, inner, out in PRODUCTS:
        x = torch.randn(rows, inner, dtype=torch.bfloat16)
        weight = torch.randn(out, inner, dtype=torch.bfloat16)
        took = seconds(lambda x=x, weight=weight: F.linear(x, weight), 20)
        found.append(
            {"shape": [rows, inner, out], "ms": took * 1e3, "gflops": 2 * rows * inner * out / took / 1e9}
        )
    return found


def layers() -> list[dict]:
    shapes = {"q": (HIDDEN, HIDDEN), "k": (KV, HIDDEN), "v": (KV, HIDDEN), "o": (HIDDEN, HIDDEN)}
    shapes |= {"gate": (FFN, HIDDEN), "up": (FFN, HIDDEN), "down": (HIDDEN, FFN)}
    w = {name: torch.randn(*shape, dtype=torch.bfloat16) for name, shape in shapes.items()}
    qkv, gate_up = torch.cat([w["q"], w["k"], w["v"]]), torch.cat([w["gate"], w["up"]])
    found = []
    for rows in LAYER_ROWS:
        x = torch.randn(1, rows, HIDDEN, dtype=torch.bfloat16)

        def separate(x=x):
            F.linear(x, w["q"]), F.linear(x, w["k"]), F.linear(x, w["v"]), F.linear(x, w["o"])
            F.linear(F.silu(F.linear(x, w["gate"])) * F.linear(x, w["up"]), w["down"])

        def fused(x=x):
            F.linear(x, qkv).split([HIDDEN, KV, KV], -1), F.linear(x, w["o"])
            gate, up = F.linear(x, gate_up).chunk(2, -1)
            F.linear(F.silu(gate) * up, w["down"])

        a, b = seconds(separate, 200), seconds(fused, 200)
        same = torch.equal(F.linear(x, qkv)[..., :HIDDEN], F.linear(x, w["q"])) and torch.equal(
            F.linear(x, gate_up)[..., FFN:], F.linear(x, w["up"])
        )
        found.append({"rows": rows, "separate_ms": a * 1e3, "fused_ms": b * 1e3, "identical": same})
    return found


def stack() -> list[dict]:
    """A decoding step's projections, every layer's own weights: ms and GB/s of weights per dtype."""
    shapes = [(HIDDEN, HIDDEN), (KV, HIDDEN), (KV, HIDDEN), (HIDDEN, HIDDEN), (FFN, HIDDEN), (FFN, HIDDEN)]
    shapes = (shapes + [(HIDDEN, FFN)]) * LAYERS
    bf16 = [torch.randn(*shape, dtype=torch.bfloat16) for shape in shapes]
    weights = {
        "bf16": bf16,
        "bf16_packed": _packed(bf16),
        "fp32": [w.float() for w in bf16],
        "int8": [_int8(w) for w in bf16],
    }
    found = []
    for rows in STACK_ROWS:
        entry = {"rows": rows}
        for kind, stacked in weights.items():
            dtype = torch.float32 if kind == "fp32" else torch.bfloat16
            inputs = {n: torch.randn(rows, n, dtype=dtype) for n in (HIDDEN, FFN)}
            if kind == "int8":

                def call(stacked=stacked, inputs=inputs):
                    for w, scale in stacked:
                        torch.ops.aten._weight_int8pack_mm(inputs[w.shape[1]], w, scale)

                size = sum(w.numel() for w, _ in stacked)
            elif kind == "bf16_packed":

                def call(stacked=stacked, inputs=inputs):
                    for layer in stacked:
                        layer(inputs[layer.in_features])

                size = sum(layer.weight.numel() * 2 for layer in stacked)
            else:

                def call(stacked=stacked, inputs=inputs):
                    for w in stacked:
                        F.linear(inputs[w.shape[1]], w)

                size = sum(w.numel() * w.element_size() for w in stacked)
            took = seconds(call, 10)
            entry[kind] = {"ms": took * 1e3, "gb_per_s": size / took / 1e9}
        found.append(entry)
    return found


IDENTITY_ROWS = (
    *range(1, PACK_ROWS + 1),
    80,
    96,
    109,
    128,
    160,
    200,
    256,
    300,
    400,
    512,
    700,
)  # decoding, prompts


def _packed(weights: list[torch.Tensor]) -> list[torch.nn.Linear]:
    layers = []
    for weight in weights:
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=torch.bfloat16)
        layer.weight = torch.nn.Parameter(weight, requires_grad=False)
        pack_linears(layer)
        layers.append(layer)
    return layers


@torch.inference_mode()
def packed_identity() -> dict:
    """Per weight shape, the row counts at which a packed layer's output differs from ``F.linear``'s."""
    found = {}
    for out_features, in_features in [
        (HIDDEN, HIDDEN),
        (KV, HIDDEN),
        (FFN, HIDDEN),
        (HIDDEN, FFN),
        (VOCAB, HIDDEN),
    ]:
        weight = torch.randn(out_features, in_features, dtype=torch.bfloat16) * 0.05
        (layer,) = _packed([weight])
        differ = [
            rows
            for rows in IDENTITY_ROWS
            if not torch.equal(
                layer(x := torch.randn(rows, in_features, dtype=torch.bfloat16)), F.linear(x, weight)
            )
        ]
        found[f"{out_features}x{in_features}"] = differ
    return found


def _int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = weight.float().abs().amax(1).clamp(min=1e-8) / 127
    quantized = (weight.float() / scale[:, None]).round().clamp(-128, 127).to(torch.int8)
    return quantized, scale.to(torch.bfloat16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_matmul.json")
    args = parser.parse_args()
    report = {
        "command": "python benchmarks/bench_matmul.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__,
    }
    report["machine"] = platform.processor() or platform.machine()
    for threads in args.threads:
        torch.set_num_threads(threads)
        found = {"products": products(), "layer": layers(), "decoding_step": stack()}
        found["packed_differs_at_rows"] = packed_identity()
        report[f"threads_{threads}"] = found
        print(f"== {threads} thread(s)")
        for entry in found["products"]:
            print(f"  linear {entry['shape']}: {entry['gflops']:.0f} GFLOP/s ({entry['ms']:.2f} ms)")
        for entry in found["layer"]:
            ratio = entry["separate_ms"] / entry["fused_ms"]
            print(
                f"  layer, {entry['rows']} rows: separate {entry['separate_ms']:.3f} ms, fused "
                f"{entry['fused_ms']:.3f} ms ({ratio:.2f}x), identical {entry['identical']}"
            )
        for entry in found["decoding_step"]:
            kinds = ", ".join(
                f"{kind} {entry[kind]['ms']:.1f} ms ({entry[kind]['gb_per_s']:.1f} GB/s)" for kind in KINDS
            )
            print(f"  decoding step, {LAYERS} layers' projections, {entry['rows']} rows: {kinds}")
        for shape, differ in found["packed_differs_at_rows"].items():
            print(f"  packed {shape}: differs from F.linear at {len(differ)} row counts {differ[:10]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
