"""The `mqc-edge` command line: argument parsing only; the work lives in the packages.

Heavy modules are imported inside each handler so that `mqc-edge --help` stays instant and a
runtime-only install never imports torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mqc_edge.contract import MEMORY_STORAGE, MEMORY_STORAGE_DEFAULT
from mqc_edge.errors import ConfigError, MqcEdgeError, PromptError


def _size(text: str) -> tuple[int, int]:
    """Parse 'WxH' (for example 480x480) into (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 480x480, got {text!r}") from None
    if width < 64 or height < 64:
        raise argparse.ArgumentTypeError(f"size must be at least 64x64, got {text!r}")
    return width, height


def _model_path(model: Path | None) -> Path:
    """MODEL as given, or the cached export of the shipped default for `default` (and for None)."""
    from mqc_edge.default_model import cache_root, resolve_model

    return resolve_model(model, cache_root(os.environ), log=lambda line: print(line, file=sys.stderr))


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
        target_scale=args.target_scale,
    )
    print(f"wrote {args.videos} videos x {args.frames} frames to {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from mqc_edge.data.evaluate import evaluate_predictions, format_table

    if args.model is not None:
        return _eval_model(args)
    if args.degrade is not None:
        raise ConfigError("eval --degrade: give --model (it segments the degraded frames), not --pred")
    if args.encode_ahead:
        raise ConfigError("eval --encode-ahead: give --model with --variants or --degrade (--pred only scores masks)")
    report = evaluate_predictions(pred_root=args.pred, gt_root=args.gt, out_dir=args.out, split=args.split)
    print(format_table(report))
    print(f"wrote {args.out / 'metrics.json'}")
    return 0


def _eval_model(args: argparse.Namespace) -> int:
    from mqc_edge.benchmarks.parity_eval import ParityEvalConfig, format_parity, run_parity_eval

    if args.degrade is not None:
        return _eval_degraded(args)
    if args.variants:
        return _eval_variants(args)
    if args.encode_ahead:
        raise ConfigError("eval --encode-ahead: with --variants or --degrade only (parity runs the torch reference, "
                          "which runs serially)")

    config = ParityEvalConfig(model_dir=_model_path(args.model), dataset=args.gt, out_dir=args.out, backend=args.backend,
                              modes=tuple(args.modes) if args.modes else None, split=args.split, threads=args.threads)
    report = run_parity_eval(config)
    print(format_parity(report))
    print(f"wrote {args.out / 'parity.json'}; parity {'passed' if report['passed'] else 'FAILED'}", file=sys.stderr)
    return 0 if report["passed"] else 1


def _eval_variants(args: argparse.Namespace) -> int:
    from mqc_edge.benchmarks.accuracy_eval import AccuracyEvalConfig, format_accuracy, run_accuracy_eval

    needs_model = any(name != "flow-gt-mask" for name in args.variants)
    config = AccuracyEvalConfig(model_dir=_model_path(args.model) if needs_model else args.model, dataset=args.gt,
                                out_dir=args.out, variants=tuple(args.variants), backend=args.backend,
                                split=args.split, threads=args.threads, encode_ahead=args.encode_ahead)
    print(format_accuracy(run_accuracy_eval(config)))
    print(f"wrote {args.out / 'accuracy.json'}", file=sys.stderr)
    return 0


def _eval_degraded(args: argparse.Namespace) -> int:
    from mqc_edge.benchmarks.accuracy_eval import AccuracyEvalConfig
    from mqc_edge.benchmarks.degradation import (DegradationEvalConfig, format_degradation, parse_kinds,
                                                 parse_strengths, run_degradation_eval)

    kinds, strengths = parse_kinds(args.degrade), parse_strengths(args.strengths or [])
    variants = tuple(args.variants or ("mqc", "sam2-box"))
    needs_model = any(name != "flow-gt-mask" for name in variants)
    accuracy = AccuracyEvalConfig(model_dir=_model_path(args.model) if needs_model else args.model, dataset=args.gt,
                                  out_dir=args.out, variants=variants, backend=args.backend, split=args.split,
                                  threads=args.threads, encode_ahead=args.encode_ahead)
    config = DegradationEvalConfig(accuracy, kinds, strengths, seed=args.degrade_seed)
    print(format_degradation(run_degradation_eval(config, log=lambda line: print(line, file=sys.stderr))))
    print(f"wrote {args.out / 'degradation.json'} and degradation.png", file=sys.stderr)
    return 0


class _AppendPrompt(argparse.Action):
    """--text, --box and --points each add one object, kept in command-line order (obj1, obj2, ...)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        if self.const == "points":
            prompt = {"points": [point[:2] for point in values], "labels": [point[2] for point in values]}
        else:
            prompt = {self.const: values}
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), prompt])


def _point(text: str) -> tuple[float, float, int]:
    """Parse 'x,y,label' (label 1 = object, 0 = background) into a point prompt."""
    try:
        x, y, label = text.split(",")
        point = (float(x), float(y), int(label))
    except ValueError:
        raise argparse.ArgumentTypeError(f"point must look like x,y,label (e.g. 120,80,1), got {text!r}") from None
    if point[2] not in (0, 1):
        raise argparse.ArgumentTypeError(f"point label must be 1 (object) or 0 (background), got {text!r}")
    return point


def _numbers(kind: type, counts: tuple[int, ...], example: str):
    """An argparse type: comma-separated numbers of `kind`, as many as one of `counts`."""
    expected = f"{' or '.join(map(str, counts))} comma-separated numbers like {example}"

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(part) for part in text.split(","))
        except ValueError:
            values = ()
        if len(values) not in counts:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return values

    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _frame_format(args: argparse.Namespace):
    """The `run` options on frame decoding as a FrameFormat; ConfigError (with the install hint) when
    they need rasterio and the `[geo]` extra is missing."""
    from mqc_edge.data.frames import FrameFormat

    frame_format = FrameFormat(max_value_16bit=args.white_point, bands=args.bands, stretch=args.stretch)
    if frame_format.needs_gdal:
        from mqc_edge.data.geotiff import rasterio_module

        rasterio_module()
    return frame_format


def _cmd_run(args: argparse.Namespace) -> int:
    from mqc_edge.runtime.run import run_model

    if not args.prompts:
        raise PromptError("run: give at least one object: --text T, --box X0 Y0 X1 Y1 or --points X,Y,LABEL ...")
    if args.model is not None and args.checkpoint is not None:
        raise ConfigError("run: give the model once, as MODEL (export directory or checkpoint) or as --checkpoint")
    frame_format = _frame_format(args)
    model = args.checkpoint or _model_path(args.model)
    backend = args.backend or ("onnxruntime" if (model / "manifest.json").is_file() else "torch")
    count, description = run_model(
        model=model, video=args.video, out_dir=args.out, prompts=args.prompts, mode=args.mode,
        backend=backend, model_config=args.model_config, image_size=args.image_size,
        save_logits=args.save_logits, threads=args.threads, overlay_fps=args.overlay_fps if args.overlay else None,
        frame_format=frame_format, roi=_roi_config(args), save_uncertainty=args.save_uncertainty,
        uncertainty_gate=args.uncertainty_gate, memory_weighting=args.memory_weighting,
        encode_ahead=args.encode_ahead,
    )
    print(f"{description}\nwrote {count} frames to {args.out}", file=sys.stderr)
    return 0


def _roi_config(args: argparse.Namespace):
    """`run --roi auto`'s RoiConfig, or None for `--roi off`."""
    from mqc_edge.runtime.roi import RoiConfig

    if args.roi == "off":
        return None
    return RoiConfig(max_target_px=args.roi_max_target, context=args.roi_context, min_side=args.roi_min_side)


def _cmd_export(args: argparse.Namespace) -> int:
    from mqc_edge.export import export_model

    from mqc_edge.default_model import DEFAULT_MEMORY_STORAGE, DEFAULT_MODEL, DEFAULT_WEIGHTS

    shipped = str(args.checkpoint) == DEFAULT_MODEL
    checkpoint = DEFAULT_WEIGHTS if shipped else args.checkpoint
    storage = args.memory_storage or (DEFAULT_MEMORY_STORAGE if shipped else MEMORY_STORAGE_DEFAULT)
    manifest = export_model(
        checkpoint=checkpoint, out=args.out, model_config=args.model_config, image_size=args.image_size,
        opset=args.opset, texts=args.texts, text_encoder=not args.no_text_encoder,
        memory_storage=storage,
    )
    parity = manifest["parity"]
    for mode, report in parity["end_to_end"].items():
        print(f"{mode}: {report['frames']} frames, max logit diff {report['max_frame_logit_relative']:.2e} of max "
              f"|logit|, mask IoU mean {report['mask_iou_mean']:.4f} min {report['mask_iou_min']:.4f}", file=sys.stderr)
    print(f"wrote {len(manifest['stages'])} stages to {args.out}; parity {'passed' if parity['passed'] else 'FAILED'}"
          f" (report in {args.out / 'manifest.json'})", file=sys.stderr)
    return 0 if parity["passed"] else 1


def _cmd_build(args: argparse.Namespace) -> int:
    from mqc_edge.calibration.clips import CALIBRATION_SEED, ClipSet
    from mqc_edge.precision.build import REPORT_NAME, BuildConfig, build_precision
    from mqc_edge.precision.plans import Int8Plan

    config = BuildConfig(
        model_dir=_model_path(args.model_dir), out=args.out, precision=args.precision,
        stages=tuple(args.stages) if args.stages else None,
        calibration=ClipSet(source=args.calib, clips=args.calib_clips, frames=args.calib_frames, seed=CALIBRATION_SEED),
        gate_clips=ClipSet(clips=args.gate_clips, frames=args.gate_frames),
        int8=Int8Plan(method=args.method, scheme=args.int8_scheme, activation_matmuls=args.int8_activation_matmuls),
        threads=args.threads, force=args.force, node_search=args.node_search,
    )
    report = build_precision(config)
    for mode, gate in report["gate"]["modes"].items():
        delta = gate["jf_delta_points"]
        print(f"{mode}: {gate['frames']} frames, mask IoU mean {gate['mask_iou_mean']:.4f} min {gate['mask_iou_min']:.4f}, "
              f"max logit error {gate['max_logit_abs']:.3g}, J&F delta {'-' if delta is None else f'{delta:+.3f}'} pts",
              file=sys.stderr)
    print(f"wrote {args.out} ({args.precision}); gate {'passed' if report['gate']['passed'] else 'FAILED (forced)'} "
          f"(report in {args.out / (REPORT_NAME + '.md')})", file=sys.stderr)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from mqc_edge.benchmarks.harness import BenchConfig, run_benchmark
    from mqc_edge.benchmarks.report import markdown

    config = BenchConfig(
        model_dir=_model_path(args.model_dir[0]), variants=tuple(_model_path(path) for path in args.model_dir[1:]),
        out_dir=args.out, backends=tuple(args.backends), vs_pytorch=args.vs_pytorch,
        vs_sam2=args.vs_sam2, modes=tuple(args.modes), objects=tuple(args.objects), frames=args.frames, repeats=args.repeats, threads=args.threads,
        video=args.video, box=tuple(args.box) if args.box else None, clip_size=args.clip_size, seed=args.seed,
        device_peak=args.device_peak, u8s8_peak=args.u8s8_peak, device=args.device, precision=args.precision,
        meta_compiled=args.vs_sam2_compiled, frame_step=args.frame_step, encode_ahead=args.encode_ahead,
    )
    print(markdown(run_benchmark(config)))
    print(f"wrote {args.out / 'report.json'}, report.md and plots", file=sys.stderr)
    return 0


def _peak(text: str) -> tuple[float, float]:
    """Parse 'GFLOPS,GBps' (for example 305,20)."""
    try:
        gflops, gbps = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"device peak must look like GFLOPS,GBps (e.g. 305,20), got {text!r}") from None
    return gflops, gbps


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from mqc_edge.training.trainer import STATE_FILE, Trainer

    if args.threads < 1:
        raise ConfigError(f"threads: expected >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    settings = {name: getattr(args, name) for name in _TRAIN_SETTINGS if getattr(args, name) is not None}
    if args.resume:
        if args.init is not None:
            settings["init"] = args.init
        if args.reinit:
            settings["reinit"] = args.reinit
        for start in ("memory_locality", "memory_mask_gain"):
            if getattr(args, start) is not None:
                settings[start] = getattr(args, start)
        if settings:
            raise ConfigError(f"train --resume continues with the run's saved settings; drop {sorted(settings)}")
        trainer = Trainer.resume(args.out, device=args.device)
    elif (args.out / STATE_FILE).exists():
        raise ConfigError(f"{args.out}: holds a training run already; pass --resume to continue it, or another --out")
    else:
        trainer = _new_trainer(args.out, settings, args.device)
        if args.init is not None:
            print(trainer.start_from(args.init, tuple(args.reinit)), file=sys.stderr)
        elif args.reinit:
            raise ConfigError("train --reinit restarts parts of an --init checkpoint; give --init")
        if args.memory_locality is not None or args.memory_mask_gain is not None:
            trainer.start_memory(args.memory_locality, args.memory_mask_gain)
    time_limit = None if args.time_limit is None else 60 * args.time_limit
    state = trainer.run(steps=args.stop_at, time_limit_s=time_limit, loader_workers=args.loader_workers)
    print(f"trained {state.step} of {trainer.config.steps} steps; checkpoint {args.out / 'model.safetensors'}",
          file=sys.stderr)
    return 0


_TRAIN_SETTINGS = ("steps", "lr", "seed", "variant", "image_size", "clip_frames", "objects", "checkpoint_minutes",
                   "validate_every", "trainable", "focal_weight", "balanced_weight", "moga", "degraded_share",
                   "start_shares", "memory_curriculum", "batch_clips", "text_states",
                   "memory_read_weight", "box_token_weight", "fusion_positional_values", "text_start_multimask")
_MODEL_SETTINGS = {"variant": "sam2_variant", "image_size": "image_size", "moga": "moga",
                   "fusion_positional_values": "fusion_positional_values"}
_SAMPLING_SETTINGS = {"clip_frames": "frames", "objects": "max_objects", "degraded_share": "degraded_share",
                      "start_shares": "start_shares"}


def _new_trainer(out: Path, settings: dict, device: str):
    import dataclasses

    from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
    from mqc_edge.training.trainer import Trainer, TrainConfig

    if "start_shares" in settings:
        settings = {**settings, "start_shares": tuple(settings["start_shares"])}
    if "text_states" in settings:
        settings = {**settings, "text_states": str(Path(settings["text_states"]).absolute())}
    model_config = dataclasses.replace(DEFAULT_MODEL_CONFIG, **{
        field: settings[name] for name, field in _MODEL_SETTINGS.items() if name in settings})
    renamed = {"lr": "learning_rate"}
    config = TrainConfig(**{renamed.get(name, name): tuple(value) if name in ("trainable", "memory_curriculum") else value
                            for name, value in settings.items()
                            if name not in _MODEL_SETTINGS and name not in _SAMPLING_SETTINGS})
    sampling = dataclasses.replace(config.sampling, image_size=model_config.image_size, **{
        field: settings[name] for name, field in _SAMPLING_SETTINGS.items() if name in settings})
    config = dataclasses.replace(config, sampling=sampling)
    return Trainer(out, config, model_config, device=device)


def _cmd_demo(args: argparse.Namespace) -> int:
    from mqc_edge.demo import run_demo

    run_demo(out_dir=args.out, model_dir_of=lambda: _model_path(args.model), videos=args.videos, frames=args.frames,
             size=args.size, seed=args.seed, threads=args.threads, encode_ahead=args.encode_ahead)
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from mqc_edge.runtime.batch import REPORT_FILE, BatchSettings, import_ray, read_tasks, run_batch

    import_ray()  # before the default model's export: a missing extra is one line at once
    tasks = read_tasks(args.videos, args.split)  # every line checked before any model or Ray work
    model = _model_path(args.model)  # `default` is exported once here, never in a task
    backend = args.backend or ("onnxruntime" if (model / "manifest.json").is_file() else "torch")
    settings = BatchSettings(model=model, mode=args.mode, backend=backend, threads=args.threads)
    report = run_batch(tasks, settings, args.out, address=args.address, workers=args.workers)
    for entry in report["tasks"]:
        if entry["status"] == "failed":
            print(f"failed: {entry['name']}: {entry['error']}", file=sys.stderr)
    print(f"batch: {report['ok']} ok, {report['failed']} failed, {report['skipped']} skipped; "
          f"report {args.out / REPORT_FILE}", file=sys.stderr)
    return 1 if report["failed"] else 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from functools import partial

    from mqc_edge.doctor import default_fp16_export, run_doctor

    model = _model_path(args.model)
    log = partial(print, file=sys.stderr)
    fp16_dir_of = partial(default_fp16_export, model, args.threads, log) if str(args.model) == "default" else None
    return run_doctor(model, fp16_dir_of, frames=args.frames, threads=args.threads,
                      rebuild_engines=args.rebuild_engines, err=log)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqc-edge", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_demo_parser(commands)
    _add_data_parser(commands)
    _add_eval_parser(commands)
    _add_compare_parser(commands)
    _add_run_parser(commands)
    _add_export_parser(commands)
    _add_build_parser(commands)
    _add_bench_parser(commands)
    _add_batch_parser(commands)
    _add_train_parser(commands)
    _add_train_prompts_parser(commands)
    _add_doctor_parser(commands)
    return parser


def _add_compare_parser(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="two `mqc-edge eval` folders of the same videos, video by video: "
                                                  "the J&F difference and its standard error")
    compare.add_argument("eval_a", type=Path, help="the baseline's `mqc-edge eval --out` folder")
    compare.add_argument("eval_b", type=Path, help="the candidate's, on the same videos")
    compare.add_argument("--reports", nargs="+", default=None, metavar="REPORT",
                         help="which reports: a variant (mqc, sam2-box, ...), MODE/BACKEND of parity, or . for --pred "
                              "(default: every report both hold)")
    compare.set_defaults(handler=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from mqc_edge.benchmarks.paired_comparison import compare_evaluations, format_comparison

    sys.stdout.write(format_comparison(args.eval_a, args.eval_b,
                                       compare_evaluations(args.eval_a, args.eval_b, args.reports)))
    return 0


def _add_demo_parser(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="the shipped default model on generated satellite-like clips: "
                                            "export, run from text and box, J&F, overlay, report")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    demo.add_argument("--model", type=Path, default=None, help="an export directory (default: the shipped model)")
    demo.add_argument("--videos", type=int, default=2)
    demo.add_argument("--frames", type=int, default=24)
    demo.add_argument("--size", type=_size, default=(256, 256), help="WxH")
    demo.add_argument("--seed", type=int, default=0, help="clip seed (test seeds stay below the training seed)")
    demo.add_argument("--threads", type=int, default=None,
                      help="onnxruntime threads per session (default: 2, or 1 with --encode-ahead)")
    demo.add_argument("--encode-ahead", action="store_true",
                      help="the next frame's image encoding beside this frame's memory stages (the same masks; "
                           "default: one stage at a time)")
    demo.set_defaults(handler=_cmd_demo)


def _add_data_parser(commands: argparse._SubParsersAction) -> None:
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
    synth.add_argument("--target-scale", type=float, default=1.0,
                       help="targets this many times their usual length (0.25: 10-30 px cars in 1920x1080 frames)")
    synth.set_defaults(handler=_cmd_data_synth)


def _add_eval_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="J&F of predictions (DAVIS protocol, referring setting), or of an "
                                                "export on two backends with their parity")
    evaluated = evaluate.add_mutually_exclusive_group(required=True)
    evaluated.add_argument("--pred", type=Path, help="P/<video>/<exp_id>/<frame>.png")
    evaluated.add_argument("--model", type=Path, help="an `mqc-edge export` directory: segment --gt with --backend and "
                                                      "with torch, score both, compare them frame by frame "
                                                      "(`default`: the shipped model)")
    evaluate.add_argument("--gt", type=Path, required=True, help="dataset root (RS-RVOS layout)")
    evaluate.add_argument("--out", type=Path, required=True, help="report folder")
    evaluate.add_argument("--split", default=None, help="score only the videos of splits/<SPLIT>.txt")
    evaluate.add_argument("--backend", default="onnxruntime",
                          choices=("onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "torch"),
                          help="with --model: the backend compared with the torch reference")
    evaluate.add_argument("--modes", nargs="+", choices=("mqc", "sam2"), default=None,
                          help="with --model: mqc (expressions) and/or sam2 (ground-truth frame-0 boxes); default all "
                               "the model has")
    evaluate.add_argument("--threads", type=int, default=None, help="with --model: CPU threads of each backend")
    evaluate.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                          help="with --model: J&F of these tracking variants on --backend alone instead of parity: "
                               "mqc, mqc-no-tmcc, sam2-text, sam2-box, sam2-box-roi (crop-and-zoom), flow-gt-mask (docs/model_card.md)")
    evaluate.add_argument("--degrade", default=None, metavar="KINDS",
                          help="with --model: J&F of the variants (default mqc sam2-box) clean and under each of "
                               "these comma-separated degradations of the frames: noise, blur, lowlight, haze, "
                               "clouds, timevarying (mqc_edge/benchmarks/degradation.py)")
    evaluate.add_argument("--strengths", nargs="+", default=None, metavar="KIND=V1,V2,...",
                          help="with --degrade: a kind's strengths instead of the defaults (noise std in grey "
                               "levels, blur std in px, lowlight and haze 1 - gain / transmission, clouds cover)")
    evaluate.add_argument("--degrade-seed", type=int, default=0, help="with --degrade: seed of noise and clouds")
    evaluate.add_argument("--encode-ahead", action="store_true",
                          help="with --variants or --degrade: the next frame's image encoder overlaps this frame's "
                               "memory stages (onnxruntime CPU; same masks; measured no faster than serial at "
                               "256 px on 2 cores; "
                               "--threads default 1 per session)")
    evaluate.set_defaults(handler=_cmd_eval)


def _add_run_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="segment a video from a text, box or points on its first frame")
    run.add_argument("model", type=Path, nargs="?", default=None, metavar="MODEL",
                     help="an `mqc-edge export` directory, a checkpoint (same as --checkpoint), or `default` "
                          "(the shipped model, also when MODEL is left out)")
    run.add_argument("--checkpoint", type=Path, default=None,
                     help="MQC-SAM .safetensors, Meta's SAM 2.1 .pt, or an `mqc-edge export` directory")
    run.add_argument("--model-config", default=None, help="SAM 2.1 config of a Meta checkpoint (sam2.1_hiera_t)")
    run.add_argument("--image-size", type=int, default=None, help="model input size S (Meta checkpoint default 1024)")
    run.add_argument("--mode", choices=("mqc", "sam2"), default="mqc", help="mqc: TMCC + DAMI; sam2: SAM 2's memory")
    run.add_argument("--backend", choices=("torch", "onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt"),
                     default=None, help="who runs the stages; all but torch need an export directory "
                                        "(default: onnxruntime for an export directory, torch for a checkpoint)")
    run.add_argument("--video", type=Path, required=True, help="frame folder, image or video file")
    run.add_argument("--white-point", type=_positive_int, default=None, metavar="N",
                     help="raw value shown as white in 16-bit frames, [0, N] -> [0, 255] (4095 for 12-bit data; "
                          "default: the type's maximum)")
    run.add_argument("--bands", type=_numbers(int, (1, 3), "4,3,2"), default=None, metavar="R,G,B",
                     help="GeoTIFF bands shown as red,green,blue (or one as grey), GDAL's numbers from 1; per-band "
                          "files are named <frame>_B<n>.tif (needs the [geo] extra)")
    run.add_argument("--stretch", type=_numbers(float, (2,), "2,98"), default=None, metavar="LOW,HIGH",
                     help="GeoTIFF percentile stretch per band, measured once on the first frame (NoData left out) "
                          "and kept for the video (needs the [geo] extra)")
    run.add_argument("--text", dest="prompts", action=_AppendPrompt, const="text",
                     help="referring expression (mode mqc); each --text, --box, --points is one object")
    run.add_argument("--box", dest="prompts", action=_AppendPrompt, const="box", type=float, nargs=4,
                     metavar=("X0", "Y0", "X1", "Y1"), help="frame pixels; repeat for several objects")
    run.add_argument("--points", dest="prompts", action=_AppendPrompt, const="points", type=_point, nargs="+",
                     metavar="X,Y,LABEL", help="label 1 object, 0 background; one object per --points")
    run.add_argument("--out", type=Path, required=True,
                     help="output folder (several objects: one folder each, O/obj<k>, listed in O/objects.json)")
    run.add_argument("--save-logits", action="store_true", help="also write float32 logits/<frame>.npy")
    run.add_argument("--save-uncertainty", action="store_true",
                     help="also write uncertainty/<frame>.png, 0-255 = u in [0, 1] (models with the uncertainty head)")
    run.add_argument("--uncertainty-gate", type=float, default=None, metavar="U",
                     help="mode mqc: no FIFO memory write when the boundary uncertainty exceeds U (default: off)")
    run.add_argument("--memory-weighting", choices=("confidence", "uncertainty"), default="confidence",
                     help="mode mqc: memory writes weighted by sigmoid(logits) (SAM 2) or by it x (1 - uncertainty)")
    run.add_argument("--overlay", action="store_true", help="also write O/overlay.mp4 (every object's mask tinted)")
    run.add_argument("--overlay-fps", type=float, default=10.0, help="frame rate of overlay.mp4")
    run.add_argument("--threads", type=int, default=None, help="CPU threads of the backend")
    run.add_argument("--encode-ahead", action="store_true",
                     help="onnxruntime CPU: encode frame t+1 in a worker thread while frame t's memory stages run "
                          "(more frames/s on 2+ cores; --threads defaults to 1 per session then; docs/benchmarks.md)")
    run.add_argument("--roi", choices=("auto", "off"), default="off",
                     help="auto: track each tiny object (box or mask start) on square crops around it, zoomed to the "
                          "model size (ROS-SAM; docs/architecture.md); text starts are refused")
    run.add_argument("--roi-max-target", type=float, default=16.0, metavar="PX",
                     help="with --roi auto: crop an object whose frame-0 box's larger side is at most PX model px")
    run.add_argument("--roi-context", type=float, default=8.0, metavar="K",
                     help="with --roi auto: crop side = K x the frame-0 box's larger side, fixed for the video")
    run.add_argument("--roi-min-side", type=_positive_int, default=128, metavar="PX",
                     help="with --roi auto: smallest crop side, frame px")
    run.set_defaults(handler=_cmd_run)


def _add_export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="per-stage ONNX + manifest.json with the parity report")
    export.add_argument("--checkpoint", type=Path, required=True,
                        help="MQC-SAM .safetensors, Meta's SAM 2.1 .pt, or `default` (the shipped weights)")
    export.add_argument("--model-config", default=None, help="SAM 2.1 config of a Meta checkpoint, e.g. sam2.1_hiera_t")
    export.add_argument("--image-size", type=int, default=None, help="model input size S (Meta checkpoint default 1024)")
    export.add_argument("--out", type=Path, required=True, help="export directory to write")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 18)")
    export.add_argument("--texts", type=Path, default=None, help="expressions.txt: one per line, embeddings precomputed")
    export.add_argument("--no-text-encoder", action="store_true",
                        help="leave out the text encoder (no transformers or MiniLM needed): box, point and mask "
                             "prompts in both modes, no text prompts")
    export.add_argument("--memory-storage", choices=MEMORY_STORAGE, default=None,
                        help="memory slots rounded to bfloat16 (as Meta's predictor stores them and training "
                             "sees them) or kept float32 (no rounding step: the export equals its torch reference "
                             "on every frame; docs/model_card.md 'Export parity'). Default: float32 for `default` "
                             "(as its cached export), bfloat16 otherwise")
    export.set_defaults(handler=_cmd_export)


def _add_build_parser(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser("build", help="an export in FP32, FP16, BF16, INT8 or mixed precision, accepted only "
                                "by its accuracy gate against the FP32 export (build_report.md); BF16 is for "
                                "TensorRT/CUDA, gated on its CPU emulation")
    build.add_argument("model_dir", type=Path, help="an FP32 `mqc-edge export` directory, or `default`")
    build.add_argument("--precision", required=True, choices=("fp32", "fp16", "bf16", "int8", "mixed"))
    build.add_argument("--out", type=Path, required=True, help="the new export directory")
    build.add_argument("--calib", type=Path, default=None,
                       help="INT8 calibration frames: a frame folder or an `mqc-edge data synth` dataset "
                            "(default: generated held-out clips)")
    build.add_argument("--calib-clips", type=int, default=2, help="calibration clips (dataset expressions)")
    build.add_argument("--calib-frames", type=int, default=8, help="frames per calibration clip")
    build.add_argument("--stages", nargs="+", default=None,
                       help="stages to convert (default: all; fp16 and bf16 leave the text encoder, which runs once "
                            "per expression, in fp32 unless named here)")
    build.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                       help="INT8 activation range calibration (static and modelopt schemes; modelopt has no percentile)")
    build.add_argument("--int8-scheme", choices=("static", "dynamic", "modelopt"), default="static",
                       help="static: explicit Q/DQ with calibrated activation scales (every backend, TensorRT's INT8); "
                            "dynamic: MatMul activations quantized per call, no calibration (onnxruntime CPU only); "
                            "modelopt: explicit Q/DQ placed and calibrated by NVIDIA ModelOpt for TensorRT "
                            "(pip install 'mqc-edge[modelopt]')")
    build.add_argument("--int8-activation-matmuls", action="store_true",
                       help="quantize the MatMuls between two activations too (attention QK^T and AV): both sides "
                            "per call (dynamic) or calibrated (static, modelopt); default: weight nodes only")
    build.add_argument("--node-search", action="store_true",
                       help="mixed: a stage outside the gate alone gets its most INT8-sensitive weight nodes left FP32 "
                       "(top 1, 2, 4, ... of a ranking on the calibration clips, up to half) until it is within the gate")
    build.add_argument("--gate-clips", type=int, default=4, help="held-out clips of the accuracy gate")
    build.add_argument("--gate-frames", type=int, default=16, help="frames per gate clip")
    build.add_argument("--threads", type=int, default=2, help="onnxruntime threads (calibration, gate, timings)")
    build.add_argument("--force", action="store_true", help="keep the export even outside its gate")
    build.set_defaults(handler=_cmd_build)


def _add_bench_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="latency, FPS, memory and cost model of every contestant on one clip")
    bench.add_argument("model_dir", type=Path, nargs="+",
                       help="an `mqc-edge export` directory, or `default` (the shipped model); several: exports of one "
                            "model (FP32 first, then its `mqc-edge build`s), side by side in one interleaved run")
    bench.add_argument("--out", type=Path, required=True, help="report folder")
    bench.add_argument("--backends", nargs="+", default=["onnxruntime"],
                       choices=("onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "torch"))
    bench.add_argument("--vs-pytorch", action="store_true", help="add the torch reference pipeline")
    bench.add_argument("--vs-sam2", action="store_true", help="add Meta's SAM2VideoPredictor (same weights)")
    bench.add_argument("--frame-step", action="store_true",
                       help="add the torch backend with each SAM 2 mode tracking frame as one captured step "
                            "(a CUDA graph on --device cuda)")
    bench.add_argument("--encode-ahead", action="store_true",
                       help="add, per export and mode, onnxruntime with encode-ahead (1-thread sessions; the next "
                            "frame's image encoder beside this frame's memory stages)")
    bench.add_argument("--vs-sam2-compiled", action="store_true",
                       help="with --vs-sam2 on --device cuda: also Meta's predictor compiled (vos_optimized=True; "
                            "torch.compile takes minutes)")
    bench.add_argument("--modes", nargs="+", choices=("sam2", "mqc"), default=["sam2"],
                       help="our runtime's modes (Meta's predictor is SAM 2); mqc needs an MQC-SAM export")
    bench.add_argument("--objects", nargs="+", type=int, default=[1],
                       help="object counts, one round each (e.g. 1 4 16); the first is the headline")
    bench.add_argument("--frames", type=int, default=24)
    bench.add_argument("--repeats", type=int, default=3, help="interleaved passes after one warm-up pass")
    bench.add_argument("--threads", type=int, default=2)
    bench.add_argument("--video", type=Path, default=None, help="default: a synthetic satellite clip")
    bench.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="prompt for --video")
    bench.add_argument("--clip-size", type=int, default=480, help="side of the synthetic clip, px")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--device-peak", type=_peak, default=None, help="GFLOPS,GBps (default: measured MatMul peak)")
    bench.add_argument("--u8s8-peak", type=float, default=None, metavar="GOPS",
                       help="peak of INT8 stages' floor (default: measured u8s8 MatMulInteger peak)")
    bench.add_argument("--device", default="cpu", help="torch device of --vs-pytorch / torch and --vs-sam2: cpu, cuda, cuda:N")
    bench.add_argument("--precision", choices=("fp32", "tf32", "fp16", "bf16"), default="fp32",
                       help="of the torch contestant and Meta's predictor (tf32 needs CUDA)")
    bench.set_defaults(handler=_cmd_bench)


def _add_batch_parser(commands: argparse._SubParsersAction) -> None:
    batch = commands.add_parser("batch", help="many videos in parallel on Ray (a local cluster, or --address): "
                                              "a folder per video, resumable, failures listed in a report")
    batch.add_argument("model", type=Path, metavar="MODEL",
                       help="an `mqc-edge export` directory (torch-free workers), a checkpoint, or `default`")
    batch.add_argument("--videos", type=Path, required=True, metavar="LIST_OR_DATASET",
                       help="a .jsonl list, one task per line ({\"video\": V, \"text\": T} or \"box\": "
                            "[x0, y0, x1, y1] or \"points\" + \"labels\"; optional \"name\"), or a dataset "
                            "folder (`mqc-edge data synth`): one task per video and expression")
    batch.add_argument("--out", type=Path, required=True,
                       help="O/<video>[/<exp_id>] per task, O/batch_report.json; finished folders are skipped")
    batch.add_argument("--address", default=None,
                       help="an existing Ray cluster (e.g. ray://head:10001 or auto); default: a local one")
    batch.add_argument("--workers", type=int, default=None, help="tasks at a time (default: as many as CPUs allow)")
    batch.add_argument("--threads", type=int, default=1, help="CPU threads (and Ray CPUs) of each task")
    batch.add_argument("--mode", choices=("mqc", "sam2"), default="mqc", help="as `mqc-edge run --mode`")
    batch.add_argument("--backend", choices=("torch", "onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt"),
                       default=None, help="as `mqc-edge run --backend`")
    batch.add_argument("--split", default=None, help="a dataset's splits/<SPLIT>.txt videos only")
    batch.set_defaults(handler=_cmd_batch)


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    from mqc_edge.training.clips import TRAIN_SEED  # torch-free

    train = commands.add_parser("train", help="train MQC-SAM (default: the shipped compact config) on synthetic clips")
    train.add_argument("--out", type=Path, required=True, help="run folder: state.pt, model.safetensors, log, plot")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out where it stopped, with its saved settings")
    train.add_argument("--steps", type=int, default=None, help="length of the schedule, in clip steps (default 6000)")
    train.add_argument("--stop-at", type=int, default=None, help="stop (checkpointed) after this step; --resume goes on")
    train.add_argument("--lr", type=float, default=None, help="AdamW peak learning rate (default 3e-4)")
    train.add_argument("--seed", type=int, default=None,
                       help=f"training clip stream (default {TRAIN_SEED}, disjoint from every test seed)")
    train.add_argument("--variant", default=None, help="SAM 2.1 variant (default: compact)")
    train.add_argument("--image-size", type=int, default=None, help="model side, px (default: 256)")
    train.add_argument("--clip-frames", type=int, default=None, help="frames per training clip (default 4)")
    train.add_argument("--objects", type=int, default=None,
                       help="objects prompted per clip, each with its own memory (default 3)")
    train.add_argument("--init", type=Path, default=None,
                       help="start from this checkpoint's weights (mqc-edge .safetensors, or Meta's SAM 2.1 .pt)")
    train.add_argument("--reinit", nargs="+", default=[], metavar="PREFIX",
                       help="with --init: parameters whose names start with PREFIX keep their fresh init "
                            "(e.g. sam.sam_mask_decoder to restart the decoder on a trained encoder)")
    train.add_argument("--trainable", nargs="+", default=None, metavar="PREFIX",
                       help="train only parameters whose names start with PREFIX (e.g. sam.sam_mask_decoder fusion.); "
                            "the rest stays frozen")
    train.add_argument("--focal-weight", type=float, default=None, help="focal term's weight (default SAM 2's 20)")
    train.add_argument("--balanced-weight", type=float, default=None,
                       help="weight of a class-balanced BCE on the masks, which empty or frame-filling masks cannot "
                            "satisfy (default 0: SAM 2's loss alone)")
    train.add_argument("--moga", action="store_true", default=None,
                       help="switch on the MoGA adapters (RobustPVOS); with --init they start at zero, i.e. as the "
                            "checkpoint was; train them alone with --trainable moga.")
    train.add_argument("--fusion-positional-values", action="store_true", default=None,
                       help="the prompt fusion's text tokens read the image's positions with its content, so its "
                            "sparse prompts can say where the target is (model/fusion.py); off in older checkpoints")
    train.add_argument("--degraded-share", type=float, default=None,
                       help="share of clips with noise/blur/haze/low light (default 0.3; 1.0 for MoGA)")
    train.add_argument("--start-shares", type=float, nargs=3, default=None, metavar=("TEXT", "BOX", "POINT"),
                       help="how clips start (default 0.3 0.5 0.2); MoGA sits in MQC mode's memory attention, "
                            "so it learns from text starts only (1 0 0)")
    train.add_argument("--memory-locality", type=float, default=None, metavar="M",
                       help="at step 0, add a shared vector of norm M to memory attention's cross-attention q/k biases: "
                            "each query reads memory near its own position (training/memory_start.py)")
    train.add_argument("--memory-mask-gain", type=float, default=None, metavar="G",
                       help="at step 0, multiply the memory encoder's response to the mask by G (its output for an "
                            "empty mask unchanged), so a memory says where the target was")
    train.add_argument("--memory-curriculum", type=int, nargs=2, default=None, metavar=("HOLD", "FADE"),
                       help="tracked frames' image content held at 0 for HOLD steps, then faded in over FADE "
                            "steps, so the memory must carry the target (default: off)")
    train.add_argument("--memory-read-weight", type=float, default=None, metavar="W",
                       help="weight of an auxiliary loss that asks a linear read of memory attention's output for "
                            "the tracked object and not the clip's other objects (training/memory_read.py; default 0)")
    train.add_argument("--box-token-weight", type=float, default=None, metavar="W",
                       help="weight of an auxiliary loss that pulls a text start's fused sparse tokens toward the "
                            "prompt tokens of the target's frame-0 box (training/box_tokens.py; default 0)")
    train.add_argument("--text-start-single-mask", dest="text_start_multimask", action="store_const", const=False,
                       default=None, help="text starts decode through the single-mask token (as `run` with "
                                          "TrackerConfig.text_start_multimask off) instead of the best of three")
    train.add_argument("--batch-clips", type=int, default=None, metavar="B",
                       help="B clips per step, their box/click-started objects run as one batch (the GPU path; "
                            "default 0: one clip per step)")
    train.add_argument("--text-states", type=Path, default=None, metavar="FILE",
                       help="precomputed language-model states of every synthetic expression "
                            "(python -m mqc_edge.training.text_states FILE): the language model is not loaded")
    train.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                       help="stop, checkpointed, after this many minutes (--resume goes on)")
    train.add_argument("--loader-workers", type=int, default=0, metavar="N",
                       help="processes rendering the next steps' clips ahead (default 0: rendered in the loop)")
    train.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    train.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves a core free on 2-core hosts)")
    train.add_argument("--checkpoint-minutes", type=float, default=None, help="default 5")
    train.add_argument("--validate-every", type=int, default=None, help="steps between validation J&F (default 250; 0: never)")
    train.set_defaults(handler=_cmd_train)


_CURRICULUM_SETTINGS = ("images", "text_images", "position_steps", "fade_steps", "full_steps", "text_steps")


def _add_train_prompts_parser(commands: argparse._SubParsersAction) -> None:
    prompts = commands.add_parser("train-prompts", help="retrain the prompt path (prompt encoder, mask decoder, text "
                                                        "projection, fusion) on a frozen image encoder: position first, "
                                                        "then content, then text (training/prompt_curriculum.py)")
    prompts.add_argument("--init", default="default", help="checkpoint whose encoder and memory path are kept "
                                                           "(default: the shipped weights)")
    prompts.add_argument("--out", type=Path, required=True, help="run folder: model.safetensors, log.jsonl, validation.json")
    for name in _CURRICULUM_SETTINGS:
        prompts.add_argument(f"--{name.replace('_', '-')}", type=_positive_int, default=None,
                             help="default: the shipped run's (CurriculumConfig)")
    prompts.add_argument("--threads", type=_positive_int, default=1, help="torch threads")
    prompts.set_defaults(handler=_cmd_train_prompts)


def _cmd_train_prompts(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from mqc_edge.default_model import DEFAULT_MODEL, DEFAULT_WEIGHTS
    from mqc_edge.training.prompt_curriculum import CurriculumConfig, train_prompts

    torch.set_num_threads(args.threads)
    init = DEFAULT_WEIGHTS if args.init == DEFAULT_MODEL else Path(args.init)
    if not init.is_file():
        raise ConfigError(f"--init {init}: no such checkpoint")
    settings = {name: getattr(args, name) for name in _CURRICULUM_SETTINGS if getattr(args, name) is not None}
    report = train_prompts(init, args.out, dataclasses.replace(CurriculumConfig(), **settings))
    print(f"validation IoU {report}; checkpoint {args.out / 'model.safetensors'}", file=sys.stderr)
    return 0


def _add_doctor_parser(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="this host's versions, then a synthetic clip on onnxruntime and, with "
                                                "TensorRT, on FP16 engines checked against it (exit 1 if outside)")
    doctor.add_argument("model", nargs="?", default="default", metavar="MODEL",
                        help="an `mqc-edge export` directory, or `default` (TensorRT then runs its FP16 build)")
    doctor.add_argument("--frames", type=_positive_int, default=32, help="frames of the synthetic clip")
    doctor.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    doctor.add_argument("--rebuild-engines", action="store_true",
                        help="rebuild the TensorRT engines even when they match this host (else: built when missing)")
    doctor.set_defaults(handler=_cmd_doctor)


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
