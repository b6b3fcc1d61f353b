"""Package a trained rait adapter as a built-in model of the rait package (maintainers' tool).

    python scripts/ship_model.py ADAPTER_DIR [--name smollm2-ner-en] [--source TEXT]
        [--selection JSON] [--scores JSON] [--card docs/model_card.md] [--overwrite]

Writes src/rait/resources/models/NAME/ (rait.builtin.package_adapter: bf16 weights, portable base model
name, builtin.json with the metadata) and, with --card, a draft model card to edit. JSON options take
inline JSON or a .json file. Commit the packaged directory; rait.NER.from_pretrained() then loads it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rait.builtin import BUILTIN_MODELS, DEFAULT_BUILTIN, model_card, package_adapter
from rait.errors import RaitError


def json_option(value: str):
    """Inline JSON, or the content of a ``.json`` file."""
    try:
        if value.endswith(".json") and Path(value).is_file():
            return json.loads(Path(value).read_text(encoding="utf-8"))
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise RaitError(f"{value[:60]}: not JSON ({exc.msg})") from None


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("adapter_dir", type=Path, help="a finished `rait train` output directory")
    parser.add_argument("--name", default=DEFAULT_BUILTIN, choices=sorted(BUILTIN_MODELS))
    parser.add_argument("--source", help="where the adapter comes from [default: ADAPTER_DIR as given]")
    parser.add_argument("--selection", help="how it was chosen (JSON)")
    parser.add_argument("--scores", help="its scores (JSON)")
    parser.add_argument("--card", type=Path, help="also write a draft model card to this file")
    parser.add_argument("--overwrite", action="store_true", help="replace a packaged model (and --card)")
    args = parser.parse_args(argv)
    try:
        if args.card is not None and args.card.exists() and not args.overwrite:
            raise RaitError(f"{args.card} exists; pass --overwrite to replace it")
        metadata = {"source": args.source or str(args.adapter_dir)}
        for key in ("selection", "scores"):
            if getattr(args, key) is not None:
                metadata[key] = json_option(getattr(args, key))
        target = package_adapter(args.adapter_dir, args.name, metadata=metadata, overwrite=args.overwrite)
        print(f"packaged {args.name} in {target}")
        if args.card is not None:
            args.card.write_text(model_card(args.name), encoding="utf-8")
            print(f"draft model card: {args.card}")
    except RaitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
