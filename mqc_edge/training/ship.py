"""Turn a training run's checkpoint into the shipped default weights (fp16 storage), and cut a
safetensors file into parts small enough to come back from the GPU machine.

    python -m mqc_edge.training.ship RUN/model.safetensors mqc_edge/model/weights/mqc_sam_default.safetensors
    python -m mqc_edge.training.ship --split DIR FILE.safetensors...    # DIR/FILE.part1.safetensors, ...
    python -m mqc_edge.training.ship --join OUT.safetensors PART...     # the file again

fp16 storage halves the file (the package carries it); every figure of docs/model_card.md is
measured on the weights read back from this file, so the rounding is inside the measurement.

Files coming back from the GPU machine are limited to 16 MiB each, under what a run's checkpoint
weighs: `split_checkpoint` writes whole tensors into parts of at most 15 MiB (each with the file's
metadata plus {"part": "i/n"}), `join_checkpoints` writes the original file back from them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mqc_edge.errors import CheckpointError, MqcEdgeError
from mqc_edge.model.checkpoint import load_checkpoint, read_safetensors, save_checkpoint, write_safetensors

PART_KEY = "part"
"""Metadata key of a part file: "i/n", i counted from 1."""
PART_BYTES = 15 * 2**20
"""Default part size bound: 1 MiB under the 16 MiB a file coming back from the GPU machine may weigh."""


def ship(checkpoint: Path, out: Path) -> int:
    """Write `checkpoint`'s weights to `out` in fp16; returns the file size in bytes."""
    model, _ = load_checkpoint(Path(checkpoint))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, Path(out), storage_dtype=torch.float16)
    return Path(out).stat().st_size


def split_checkpoint(path: Path, out_dir: Path, max_bytes: int = PART_BYTES) -> list[Path]:
    """Write `path`'s tensors, each whole, into `out_dir/<stem>.part<i>.safetensors`, every file at
    most `max_bytes`; CheckpointError naming a tensor that cannot fit in a part on its own."""
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    groups: list[dict[str, torch.Tensor]] = [{}]
    part_tag = f"{len(tensors)}/{len(tensors)}"  # the widest "i/n" these tensors can need
    fixed = _header_bytes({}, {**metadata, PART_KEY: part_tag})
    used = fixed
    for name in sorted(tensors):
        cost = _header_bytes({name: tensors[name]}, {}) + tensors[name].nbytes
        if fixed + cost > max_bytes:
            raise CheckpointError(
                f"checkpoint {path}: tensor {name!r} weighs {tensors[name].nbytes} bytes, over the "
                f"{max_bytes}-byte part size (a tensor is never cut)"
            )
        if used + cost > max_bytes and groups[-1]:
            groups.append({})
            used = fixed
        groups[-1][name] = tensors[name]
        used += cost
    parts = []
    for index, group in enumerate(groups, start=1):
        part = Path(out_dir) / f"{path.stem}.part{index}.safetensors"
        write_safetensors(part, group, {**metadata, PART_KEY: f"{index}/{len(groups)}"})
        parts.append(part)
    return parts


def join_checkpoints(parts: list[Path], out: Path) -> Path:
    """Write the file `split_checkpoint` cut into `parts` (any order) back to `out`;
    CheckpointError naming the part when one is missing, repeated or from another file."""
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[int, Path] = {}
    common: dict[str, str] | None = None
    total = None
    for part in map(Path, parts):
        part_tensors, metadata = read_safetensors(part)
        index, count = _part_number(part, metadata.pop(PART_KEY, None))
        if (total is not None and count != total) or (common is not None and metadata != common):
            raise CheckpointError(f"part {part}: not cut from the same file as {next(iter(seen.values()))}")
        if index in seen:
            raise CheckpointError(f"part {part}: part {index}/{count} already given ({seen[index]})")
        repeated = sorted(tensors.keys() & part_tensors.keys())
        if repeated:
            raise CheckpointError(f"part {part}: tensors already in another part, e.g. {repeated[:3]}")
        total, common, seen[index] = count, metadata, part
        tensors.update(part_tensors)
    if total is None:
        raise CheckpointError(f"join to {out}: no parts given")
    missing = sorted(set(range(1, total + 1)) - set(seen))
    if missing:
        raise CheckpointError(f"join to {out}: parts {missing} of {total} not given")
    write_safetensors(Path(out), tensors, common)
    return Path(out)


def _part_number(part: Path, tag: str | None) -> tuple[int, int]:
    """(i, n) of a part's "i/n" tag; CheckpointError naming the part when it has none."""
    try:
        index, count = (int(value) for value in tag.split("/"))
    except (AttributeError, ValueError):
        raise CheckpointError(f"part {part}: metadata {PART_KEY!r} expected 'i/n', got {tag!r}") from None
    if not 1 <= index <= count:
        raise CheckpointError(f"part {part}: metadata {PART_KEY!r} expected 'i/n' with 1 <= i <= n, got {tag!r}")
    return index, count


def _header_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> int:
    """An upper bound on the safetensors header bytes these entries take: dtype names counted at 12
    characters, offsets at 20 digits, 16 bytes for the length prefix and the header's padding to 8."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    header.update({name: {"dtype": "?" * 12, "shape": list(tensor.shape), "data_offsets": [10**19, 10**19]}
                   for name, tensor in tensors.items()})
    return len(json.dumps(header, separators=(",", ":")).encode()) + 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqc_edge.training.ship", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--split", type=Path, metavar="DIR", help="cut each FILE into DIR/<stem>.part<i>.safetensors")
    mode.add_argument("--join", type=Path, metavar="OUT", help="write the file the FILES (parts) were cut from to OUT")
    parser.add_argument("files", type=Path, nargs="+", metavar="FILE",
                        help="without --split/--join: RUN/model.safetensors SHIPPED.safetensors")
    args = parser.parse_args(argv)
    if args.split is None and args.join is None and len(args.files) != 2:
        parser.error("expected RUN/model.safetensors SHIPPED.safetensors, or --split DIR FILE..., or --join OUT PART...")
    try:
        if args.split is not None:
            for file in args.files:
                for part in split_checkpoint(file, args.split):
                    print(f"wrote {part}: {part.stat().st_size / 2**20:.1f} MiB")
        elif args.join is not None:
            out = join_checkpoints(args.files, args.join)
            print(f"wrote {out}: {out.stat().st_size / 2**20:.1f} MiB")
        else:
            size = ship(args.files[0], args.files[1])
            print(f"wrote {args.files[1]}: {size / 1e6:.1f} MB")
    except MqcEdgeError as error:
        print(f"ship: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
