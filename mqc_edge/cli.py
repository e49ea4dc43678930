"""The `mqc-edge` command line: argument parsing only; the work lives in the packages.

Heavy modules are imported inside each handler so that `mqc-edge --help` stays instant and a
runtime-only install never imports torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mqc_edge.errors import MqcEdgeError


def _size(text: str) -> tuple[int, int]:
    """Parse 'WxH' (for example 480x480) into (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 480x480, got {text!r}") from None
    if width < 64 or height < 64:
        raise argparse.ArgumentTypeError(f"size must be at least 64x64, got {text!r}")
    return width, height


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from mqc_edge.data.synth import generate_dataset

    generate_dataset(
        out=args.out,
        videos=args.videos,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        split=args.split,
        degrade=args.degrade,
    )
    print(f"wrote {args.videos} videos x {args.frames} frames to {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from mqc_edge.data.evaluate import evaluate_predictions, format_table

    report = evaluate_predictions(pred_root=args.pred, gt_root=args.gt, out_dir=args.out, split=args.split)
    print(format_table(report))
    print(f"wrote {args.out / 'metrics.json'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mqc_edge.demo import run_demo

    run_demo(out_dir=args.out, videos=args.videos, frames=args.frames, size=args.size, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqc-edge", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="generate a satellite-like clip, segment it, report J&F")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    demo.add_argument("--videos", type=int, default=4)
    demo.add_argument("--frames", type=int, default=32)
    demo.add_argument("--size", type=_size, default=(480, 480), help="WxH")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_cmd_demo)

    data = commands.add_parser("data", help="datasets: synthetic generation")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synth = data_commands.add_parser("synth", help="generate a synthetic satellite-video RVOS dataset")
    synth.add_argument("--out", type=Path, required=True, help="dataset root to write")
    synth.add_argument("--videos", type=int, default=10)
    synth.add_argument("--frames", type=int, default=50)
    synth.add_argument("--size", type=_size, default=(480, 480), help="WxH")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--split", choices=("train", "test"), default="test")
    synth.add_argument("--degrade", action="store_true", help="add time-varying noise/blur/haze/low light")
    synth.set_defaults(handler=_cmd_data_synth)

    evaluate = commands.add_parser("eval", help="J&F of predictions (DAVIS protocol, referring setting)")
    evaluate.add_argument("--pred", type=Path, required=True, help="P/<video>/<exp_id>/<frame>.png")
    evaluate.add_argument("--gt", type=Path, required=True, help="dataset root (RS-RVOS layout)")
    evaluate.add_argument("--out", type=Path, required=True, help="report folder")
    evaluate.add_argument("--split", default=None, help="score only the videos of splits/<SPLIT>.txt")
    evaluate.set_defaults(handler=_cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input becomes one line on stderr and exit code 2, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except MqcEdgeError as error:
        print(f"mqc-edge: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mqc-edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
