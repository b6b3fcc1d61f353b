"""bf16 linear layers on a CPU through oneDNN with their weights packed once (the kernel ``torch.compile``'s
CPU freezing uses), instead of repacking them at every call.

Decoding runs the model's products on a few rows at a time; there, ``F.linear`` on bf16 weights spends much
of its time laying the weights out for the kernel. :func:`pack_linears` lays each weight out once (for
:data:`PACK_ROWS`-row inputs) and routes every inference call of the layer to the packed kernel: faster
products of few rows, and of prompts too. On the machine it was measured on the results are bit-identical
to ``F.linear``'s at every row count tried with one thread (1-700 rows); with two threads some row counts
from 96 up differ in the last bit (``benchmarks/bench_matmul.py``, docs/inference.md). Training, fp32 and
non-CPU models are left as they are; a weight changed after packing is packed again at its next call.
"""

from __future__ import annotations

import torch

PACK_ROWS = 64  # the input rows the weights are laid out for


def pack_linears(model: torch.nn.Module) -> int:
    """Route the inference calls of ``model``'s bf16 CPU :class:`torch.nn.Linear` layers to packed weights
    (see the module doc); returns the number of layers routed (0 where oneDNN bf16 is unavailable). Calling
    it again on the same model does nothing more."""
    if not _available():
        return 0
    routed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and "forward" not in vars(module):
            weight = module.weight
            if weight.dtype == torch.bfloat16 and weight.device.type == "cpu":
                module.forward = _PackedForward(module)
                routed += 1
    return routed


class _PackedForward:
    """A linear layer's forward: the packed kernel at inference, else ``F.linear``."""

    __slots__ = ("module", "packed", "key")

    def __init__(self, module: torch.nn.Linear):
        self.module = module
        self.packed: torch.Tensor | None = None
        self.key: tuple | None = None

    def __getstate__(self):  # copies and pickles pack again on first use: the packed tensor has no storage
        return {"module": self.module}

    def __setstate__(self, state) -> None:
        self.module, self.packed, self.key = state["module"], None, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.module.weight, self.module.bias
        if (
            (torch.is_grad_enabled() and weight.requires_grad)
            or weight.dtype != torch.bfloat16
            or weight.device.type != "cpu"
            or x.dtype != torch.bfloat16
            or x.dim() < 2
        ):
            return torch.nn.functional.linear(x, weight, bias)
        # inference tensors keep no version counter: only replacing them is seen
        key = (id(weight), -1 if weight.is_inference() else weight._version)
        if key != self.key:
            self.packed, self.key = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_ROWS), key
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")


def _available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False
