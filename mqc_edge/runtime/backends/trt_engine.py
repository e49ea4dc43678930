"""TensorRT engines of an export directory: built per stage from its ONNX files, and their manifest.

Engines live in `<export>/tensorrt/` (or a folder the caller names): `<stage>.engine`, the
builder's `timing.cache` (kept so a rebuild reuses the measured tactics) and `engines.json`, the
engine manifest: TensorRT version, GPU compute capability, and per stage the source ONNX's
SHA-256, the precision and the engine's SHA-256. An engine only runs on the TensorRT release and
GPU architecture that built it, so the manifest is checked before anything is deserialised and a
mismatch is one line saying what differs and how to rebuild.

Precision (DESIGN section 6): TensorRT >= 11 networks are strongly typed, the precision is the
graph's (FP16 islands and Q/DQ written by `mqc-edge build`) and the FP16/INT8 builder flags no
longer exist; on TensorRT 10 the network is weakly typed and a stage's recorded precision sets
the builder flag (fp16 -> FP16, int8 -> INT8, mixed -> both).

Shapes: every dimension comes from the contract; the two symbolic ones get an optimisation
profile: `objects` 1 .. max_objects (opt 1) and `prompt_tokens` 1 .. max_prompt_tokens (opt 2,
the tracking frames'); a static dimension is min = opt = max.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mqc_edge.atomic import write_atomically, write_text_atomically
from mqc_edge.contract import OBJECTS, PROMPT_TOKENS, TRACKING_PROMPT_TOKENS, StageSpec, stage_specs
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.backends.cuda_buffers import DeviceInfo
from mqc_edge.runtime.manifest import Manifest, sha256_of

ENGINE_DIR = "tensorrt"
ENGINE_MANIFEST = "engines.json"
ENGINE_FORMAT = "mqc-edge-trt-engines/1"
TIMING_CACHE = "timing.cache"
PRECISION_FLAGS = {"fp32": (), "fp16": ("FP16",), "bf16": ("BF16",), "int8": ("INT8",), "mixed": ("FP16", "INT8")}
"""A stage's recorded precision -> TensorRT 10 builder flags (weakly typed networks only)."""


def rebuild_hint(export_dir: Path) -> str:
    """The command line that (re)builds an export's engines (mqc_edge/doctor.py)."""
    return f"rebuild with `mqc-edge doctor {export_dir} --rebuild-engines`"


@dataclass(frozen=True)
class EngineOptions:
    """How engines are built; recorded in the engine manifest."""

    max_objects: int = 16  # profile max of `objects`: `mqc-edge bench` goes to 16 objects
    max_prompt_tokens: int = 8  # profile max of `prompt_tokens`: a box (2 corners) + 5 points + padding
    workspace_mib: int = 4096  # builder scratch memory limit (TensorRT's default is the whole GPU)


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def strongly_typed(trt: Any) -> bool:
    """TensorRT >= 11 builds strongly typed networks only; 10 builds weakly typed ones here."""
    return trt_major(trt) >= 11


def precision_flags(trt: Any, precision: str) -> tuple[str, ...]:
    """Builder flag names for a stage's precision: none on a strongly typed network."""
    if precision not in PRECISION_FLAGS:
        raise ConfigError(f"stage precision: expected one of {sorted(PRECISION_FLAGS)}, got {precision!r}")
    return () if strongly_typed(trt) else PRECISION_FLAGS[precision]


def profile_shapes(spec: StageSpec, tensor: str, options: EngineOptions) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of a stage input from the contract."""
    sizes = (
        {OBJECTS: 1, PROMPT_TOKENS: 1},
        {OBJECTS: 1, PROMPT_TOKENS: TRACKING_PROMPT_TOKENS},
        {OBJECTS: options.max_objects, PROMPT_TOKENS: options.max_prompt_tokens},
    )
    return tuple(spec.input(tensor).resolved(size).shape for size in sizes)


def build_engines(trt: Any, manifest: Manifest, engine_dir: Path, device: DeviceInfo,
                  options: EngineOptions = EngineOptions(), log: Callable[[str], None] = print) -> Path:
    """Build every stage's engine into `engine_dir`, then write the engine manifest (last, so a
    folder without one is never taken for built). Returns the engine manifest's path."""
    engine_dir = Path(engine_dir)
    engine_dir.mkdir(parents=True, exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    stages = {}
    for spec in stage_specs(manifest.geometry).values():
        log(f"building the TensorRT engine of {spec.name} ({manifest.stage_precision(spec.name)})")
        engine = engine_dir / f"{spec.name}.engine"
        data = _build_stage(trt, logger, manifest, spec, engine_dir / TIMING_CACHE, options)
        write_atomically(engine, lambda path: path.write_bytes(data))
        stages[spec.name] = _stage_record(manifest, spec.name, engine)
    content = {"format": ENGINE_FORMAT, **_environment(trt, device), "strongly_typed": strongly_typed(trt),
               "options": asdict(options), "gpu": device.name, "stages": stages}
    path = engine_dir / ENGINE_MANIFEST
    write_text_atomically(path, json.dumps(content, indent=1) + "\n")
    return path


def _environment(trt: Any, device: DeviceInfo) -> dict[str, str]:
    """What an engine is tied to: the TensorRT release and the GPU architecture."""
    return {"tensorrt": str(trt.__version__), "compute_capability": device.compute_capability}


def _stage_record(manifest: Manifest, stage: str, engine: Path) -> dict[str, str]:
    onnx = manifest.content["stages"][stage]["file"]
    return {"onnx": onnx, "onnx_sha256": manifest.content["files"][onnx], "precision": manifest.stage_precision(stage),
            "engine": engine.name, "engine_sha256": sha256_of(engine)}


def _build_stage(trt: Any, logger: Any, manifest: Manifest, spec: StageSpec, cache_file: Path,
                 options: EngineOptions) -> bytes:
    """One stage's serialized engine; the timing cache is read before and written after."""
    builder = trt.Builder(logger)
    typed = strongly_typed(trt)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed else 0
    network = builder.create_network(flags)
    _parse(trt, logger, network, manifest.stage_file(spec.name))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    for flag in precision_flags(trt, manifest.stage_precision(spec.name)):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, False)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        name = network.get_input(index).name
        profile.set_shape(name, *profile_shapes(spec, name, options))
    config.add_optimization_profile(profile)
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise ConfigError(f"TensorRT could not build {spec.name} from {manifest.stage_file(spec.name)} "
                          "(its log above says why)")
    timing = bytes(config.get_timing_cache().serialize())
    write_atomically(cache_file, lambda path: path.write_bytes(timing))
    return bytes(data)


def _parse(trt: Any, logger: Any, network: Any, onnx_file: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"TensorRT's ONNX parser refused {onnx_file}: {errors}")


def check_engines(trt: Any, manifest: Manifest, engine_dir: Path, device: DeviceInfo) -> dict[str, Path]:
    """Stage -> engine file, once the engine manifest matches this TensorRT, this GPU and the
    export's graphs and precisions; otherwise ConfigError naming what differs + how to rebuild."""
    path = Path(engine_dir) / ENGINE_MANIFEST
    if not path.is_file():
        raise ConfigError(f"{path}: no TensorRT engines for {manifest.root} yet; build them with "
                          f"`mqc-edge doctor {manifest.root}` (it builds missing engines)")
    content = json.loads(path.read_text())
    for key, now in {"format": ENGINE_FORMAT, **_environment(trt, device)}.items():
        if content.get(key) != now:
            raise ConfigError(f"{path}: engines built for {key} {content.get(key)}, this host has {now}; "
                              f"{rebuild_hint(manifest.root)}")
    if set(content["stages"]) != set(manifest.content["stages"]):
        raise ConfigError(f"{path}: engines for stages {sorted(content['stages'])}, the export has "
                          f"{sorted(manifest.content['stages'])}; {rebuild_hint(manifest.root)}")
    return {stage: _check_stage(path, manifest, stage, record) for stage, record in content["stages"].items()}


def _check_stage(path: Path, manifest: Manifest, stage: str, record: dict[str, str]) -> Path:
    engine = path.parent / record["engine"]
    if not engine.is_file():
        raise ConfigError(f"{engine}: engine of {stage} is missing; {rebuild_hint(manifest.root)}")
    now = _stage_record(manifest, stage, engine)
    for key, what in (("onnx_sha256", f"source {now['onnx']} SHA-256"), ("precision", "precision"),
                      ("engine_sha256", "engine file SHA-256")):
        if record[key] != now[key]:
            raise ConfigError(f"{path}: stage {stage} {what} differs (built {record[key]}, now {now[key]}); "
                              f"{rebuild_hint(manifest.root)}")
    return engine
