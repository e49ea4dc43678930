"""The torch stage backend: the reference every other backend is compared with.

Handles are torch tensors on `device` (cpu, or cuda[:i]); memory slots and every stage output stay
there, and only `to_host` reads back (each read counted in `syncs`: on a GPU it waits for the
device). `TorchExecutor` runs the stages of a plain SAM 2.1 network (SAM 2 mode stages) or an
`MQCSAM` (SAM 2 mode and MQC stages) at a `precision`:

- fp32: the reference; TF32 off for matmuls and cuDNN during every stage call.
- tf32: fp32 tensors, TF32 tensor-core matmuls and convolutions (CUDA, compute capability >= 8.0).
- fp16 / bf16: `torch.autocast`, whose own lists decide the FP32 islands (softmax, layer_norm and
  the reductions run in float32; matmuls, convolutions and attention in the low precision). Every
  output is cast back to its contract dtype (all float32: memory slots, pointers and logits are
  stored and read as float32).

`TorchBackend` is the executor under the contract check (runtime/backends/stage_backend.py
`CheckedBackend`), so a wrong wiring fails at the stage that caused it. With `device_processing`
(on by default on CUDA) it also preprocesses frames and upsamples and thresholds logits on the
device (model/device_processing.py) instead of the host default (`HostProcessing`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import SAM2Base

from mqc_edge.contract import MEMORY_STORAGE_DEFAULT, StageSpec, TensorSpec, check_memory_storage
from mqc_edge.errors import ConfigError
from mqc_edge.model import device_processing as on_device
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.model.sam2_build import SAM21_CONFIG_NAMES, build_sam21, geometry_of
from mqc_edge.model.stages import build_stages
from mqc_edge.runtime.backends.stage_backend import CapturedFrameStep, CheckedBackend, FrameSizeOutputs, slot_index

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
"""Stage precisions of the torch backend (module docstring)."""
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:i' -> a torch.device that exists here; ConfigError (one line) otherwise."""
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device: expected cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: expected cpu, cuda or cuda:N, got {device!r}")
    if resolved.type == "cuda":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible == 0:
            raise ConfigError(f"device {device!r}: no CUDA device is visible (torch {torch.__version__}, "
                              f"built with CUDA {torch.version.cuda or 'none'})")
        if (resolved.index or 0) >= visible:
            raise ConfigError(f"device {device!r}: only {visible} CUDA device(s) are visible")
    return resolved


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse, by name and in one line (ConfigError), a precision `device` cannot run: tf32 off CUDA
    or below compute capability 8.0, bf16 on a GPU without it, fp16/bf16 where a kernel is missing."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "tf32" and device.type != "cuda":
        raise ConfigError(f"precision tf32: a CUDA matmul mode (compute capability >= 8.0); {device} has none, "
                          "use fp32")
    if device.type == "cuda" and precision in ("tf32", "bf16"):
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            raise ConfigError(f"precision {precision}: {torch.cuda.get_device_name(device)} (compute capability "
                              f"{major}.{minor}) has no {precision} tensor cores (needs 8.0)")
    if precision in AUTOCAST_DTYPES:
        _probe_autocast(device, precision)


def _probe_autocast(device: torch.device, precision: str) -> None:
    """Run the op kinds the stages use under autocast once; a missing kernel becomes a ConfigError."""
    x = torch.randn(1, 4, 8, 8, device=device)
    try:
        with torch.inference_mode(), precision_context(device, precision):
            y = F.conv2d(x, torch.randn(4, 4, 3, 3, device=device), padding=1)
            y = F.layer_norm(y.flatten(2).transpose(1, 2), (4,))
            y = F.scaled_dot_product_attention(y, y, y) @ torch.randn(4, 4, device=device)
            F.interpolate(F.gelu(y).transpose(1, 2).reshape(1, 4, 8, 8), scale_factor=2.0, mode="bilinear")
    except (RuntimeError, NotImplementedError) as error:
        raise ConfigError(f"precision {precision} on {device}: {str(error).splitlines()[0]}") from None


@contextmanager
def precision_context(device: torch.device, precision: str) -> Iterator[None]:
    """During one stage call: TF32 on for tf32 and off otherwise (restored after), autocast to
    float16 / bfloat16 for fp16 / bf16 (no weight-cast cache, so it is safe inside a CUDA graph)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        autocast = (torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision], cache_enabled=False)
                    if precision in AUTOCAST_DTYPES else nullcontext())
        with autocast:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class TorchExecutor:
    """Runs the stages of one SAM2Base or MQCSAM under `torch.inference_mode`, unchecked.

    `device`: cpu or cuda[:i] (ConfigError when no CUDA device is visible); `precision`: one of
    `PRECISIONS` (ConfigError, naming it, when the device cannot run it). `syncs` counts the
    host-device synchronisations made: every `to_host` read, every `postprocess` (one read of all
    its outputs) and every `synchronize` call. `device_processing`: whether `TorchBackend` hands
    the frame's pre- and post-processing to `preprocess` / `postprocess` here; None means on
    CUDA (where it saves the host's resize and full-frame upsampling) and off on cpu, where the
    float64 matrix-product resize is ~10x slower than Pillow (1080p -> 256: 313 vs 29 ms, one
    thread, busy machine); True on cpu tests the device path. `memory_storage`: how the memory
    encoder leaves its slots (`contract.MEMORY_STORAGE`; bfloat16 as Meta's predictor).
    """

    def __init__(self, model: SAM2Base | MQCSAM, device: str = "cpu", description: str = "",
                 precision: str = "fp32", device_processing: bool | None = None,
                 memory_storage: str = MEMORY_STORAGE_DEFAULT) -> None:
        self.device = resolve_device(device)
        check_precision(self.device, precision)
        self.precision = precision
        self.device_processing = self.device.type == "cuda" if device_processing is None else device_processing
        self.syncs = 0
        self.model = model.to(self.device).eval()
        sam = model.sam if isinstance(model, MQCSAM) else model
        self.stages = build_stages(sam, memory_storage)
        self.memory_storage = memory_storage
        self.geometry = geometry_of(sam)
        self.tokenizer_file: Path | None = None
        """tokenizer.json of the text model, for the host tokenizer (runtime/text.py); None without MQC parts."""
        if isinstance(model, MQCSAM):
            from mqc_edge.model.mqc_stages import build_mqc_stages, mqc_geometry_of

            self.geometry = dataclasses.replace(self.geometry, mqc=mqc_geometry_of(model))
            self.stages.update(build_mqc_stages(model))
            self.tokenizer_file = model.text_encoder.tokenizer_file
        self.description = description or f"{type(model).__name__} built in memory"

    def run_stage(self, spec: StageSpec, inputs: dict[str, torch.Tensor]) -> Sequence[torch.Tensor]:
        """Outputs in `spec.outputs` order, each in its contract dtype whatever the precision."""
        try:
            with torch.inference_mode(), precision_context(self.device, self.precision):
                outputs = self.stages[spec.name](*(inputs[t.name] for t in spec.inputs))
        except NotImplementedError as error:
            raise ConfigError(f"precision {self.precision} on {self.device}, stage {spec.name!r}: "
                              f"{str(error).splitlines()[0]}") from None
        outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        return tuple(output.to(getattr(torch, t.dtype)) for output, t in zip(outputs, spec.outputs))

    def describe(self, handle: torch.Tensor) -> tuple[tuple[int, ...], str]:
        return tuple(handle.shape), str(handle.dtype).removeprefix("torch.")

    def to_host(self, handle: torch.Tensor) -> np.ndarray:
        """A handle as a numpy array; on a GPU this waits for the device (one counted sync)."""
        self.syncs += 1
        return handle.detach().cpu().numpy()

    def to_host_together(self, handles: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Several handles as numpy arrays for one wait (one counted sync): on CUDA non-blocking
        copies into pinned host memory, then the stream synchronised once."""
        self.syncs += 1
        if self.device.type != "cuda":
            return [handle.detach().numpy() for handle in handles]
        copies = [handle.detach().to("cpu", non_blocking=True) for handle in handles]
        torch.cuda.current_stream(self.device).synchronize()
        return [pinned.numpy() for pinned in copies]

    def synchronize(self) -> None:
        """Wait for every queued kernel of the device (one counted sync; a no-op on cpu)."""
        self.syncs += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def from_host(self, array: np.ndarray) -> torch.Tensor:
        """An array on the device without waiting for it: on CUDA through pinned staging and a
        non-blocking copy (a pageable copy would synchronise the stream); on cpu shared, no copy."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def preprocess(self, frame: np.ndarray, image_size: int) -> torch.Tensor:
        """`StageBackend.preprocess` on the device: the uint8 frame uploaded (a quarter of the bytes of
        a float32 frame), then Pillow's bicubic resize and the ImageNet normalisation there,
        bit-exact with the host path (model/device_processing.py); nothing waits."""
        with torch.inference_mode():
            return on_device.preprocess_frame(self.from_host(frame), image_size)

    def postprocess(self, lowres: np.ndarray, frame_size: tuple[int, int],
                    uncertainty: np.ndarray | None = None) -> FrameSizeOutputs:
        """`StageBackend.postprocess` on the device: the low-res logits (and uncertainty) uploaded,
        upsampled to the frame and thresholded (clipped to [0, 1]) there, in the host path's
        order, then read back together (one counted sync). The low-res arrays come from the host,
        where hole filling (OpenCV components) and the boundary uncertainty ran on them."""
        with torch.inference_mode():
            logits = on_device.upsample_logits(self.from_host(lowres), *frame_size)
            outputs = [logits, on_device.threshold_mask(logits)]
            if uncertainty is not None:
                outputs.append(on_device.upsample_logits(self.from_host(uncertainty), *frame_size).clamp_(0.0, 1.0))
        host = self.to_host_together(outputs)
        return FrameSizeOutputs(host[0], host[1], host[2] if uncertainty is not None else None)

    def zeros(self, spec: TensorSpec) -> torch.Tensor:
        return torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype), device=self.device)

    def write_slot(self, buffer: torch.Tensor, index: int, value: torch.Tensor) -> None:
        buffer[slot_index(buffer.dim(), value.dim(), index)].copy_(value[0])

    def concat(self, handles: list[torch.Tensor]) -> torch.Tensor:
        return handles[0] if len(handles) == 1 else torch.cat(handles)

    def split(self, handle: torch.Tensor) -> list[torch.Tensor]:
        return list(handle.split(1))

    def capture_frame_step(self, objects: int = 1, capture: bool = True):
        """The SAM 2 mode tracking frame as one CUDA graph (model/cuda_graph.py `FrameStepGraph`);
        ConfigError on a device other than CUDA. `capture=False`: the same static-buffer step run
        eagerly, on any device."""
        from mqc_edge.model.cuda_graph import FrameStepGraph

        if capture and self.device.type != "cuda":
            raise ConfigError(f"capture_frame_step: CUDA graphs need a CUDA device; this executor runs on "
                              f"{self.device}")
        return FrameStepGraph(self, objects, capture)


class TorchBackend(CheckedBackend):
    """`TorchExecutor` under the contract check; `model` and `stages` (the stage modules the
    exporter traces) are its, and so are pre- and post-processing with `device_processing`."""

    def __init__(self, model: SAM2Base | MQCSAM, device: str = "cpu", description: str = "",
                 precision: str = "fp32", device_processing: bool | None = None,
                 memory_storage: str = MEMORY_STORAGE_DEFAULT) -> None:
        executor = TorchExecutor(model, device, description, precision, device_processing, memory_storage)
        super().__init__(executor)
        self.model, self.stages = executor.model, executor.stages
        self.memory_storage = executor.memory_storage
        self._frame_steps: dict[int, CapturedFrameStep] = {}
        if executor.device_processing:
            self.preprocess, self.postprocess = executor.preprocess, executor.postprocess

    def frame_step(self, objects: int) -> CapturedFrameStep:
        """`CapturedFrameStep` for `objects` objects: a CUDA graph on CUDA; on cpu the same
        static-buffer step run eagerly (model/cuda_graph.py), the glue without the gain. Captured
        once per object count and shared by the Trackers on this backend: a step's outputs are
        consumed before it returns, so Trackers taking turns frame by frame do not clash."""
        if objects not in self._frame_steps:
            self._frame_steps[objects] = self.executor.capture_frame_step(
                objects, capture=self.executor.device.type == "cuda")
        return self._frame_steps[objects]


def load(
    checkpoint: Path | None = None,
    variant: str = "tiny",
    image_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    model_config: str | None = None,
    threads: int | None = None,
    precision: str = "fp32",
    device_processing: bool | None = None,
    text_model: bool | None = None,
    memory_storage: str = MEMORY_STORAGE_DEFAULT,
) -> TorchBackend:
    """`load_backend("torch", ...)`: an MQC-SAM checkpoint (mqc-edge .safetensors, both modes), or
    SAM 2.1 (`model_config` / `variant` at `image_size`, default 1024) with seeded random weights
    or Meta's checkpoint (SAM 2 mode only), on `device` at `precision` (one of `PRECISIONS`), pre-
    and post-processing on the device per `device_processing` (`TorchExecutor`; default: on CUDA).
    `text_model`: build an MQC-SAM checkpoint's frozen language model (True) or not (False: box and
    point prompts only, no transformers or MiniLM needed); None: as the checkpoint was saved.
    `memory_storage`: the memory encoder's output rounding (`contract.MEMORY_STORAGE`).
    ConfigError before anything loads when the device, the precision or the storage cannot run here."""
    check_memory_storage(memory_storage)
    check_precision(resolve_device(device), precision)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads: expected >= 1, got {threads}")
        torch.set_num_threads(threads)
    if model_config is not None:
        if model_config not in SAM21_CONFIG_NAMES:
            raise ConfigError(f"model config: expected one of {sorted(SAM21_CONFIG_NAMES)}, got {model_config!r}")
        variant = SAM21_CONFIG_NAMES[model_config]
    if checkpoint is not None and _is_mqc_checkpoint(Path(checkpoint)):
        return _load_mqc(Path(checkpoint), variant if model_config else None, image_size, device, precision,
                         device_processing, text_model, memory_storage)
    model = build_sam21(variant, image_size or 1024, seed, checkpoint)
    source = f"SAM 2.1 {variant} " + (f"from {checkpoint}" if checkpoint else f"with random weights (seed {seed})")
    return TorchBackend(model, device, f"{source} at {model.image_size} px", precision, device_processing,
                        memory_storage)


def _is_mqc_checkpoint(path: Path) -> bool:
    """An mqc-edge checkpoint is a .safetensors file whose metadata names our format."""
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    from safetensors import SafetensorError, safe_open

    from mqc_edge.model.checkpoint import FORMAT

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT
    except SafetensorError:
        return False


def _load_mqc(path: Path, variant: str | None, image_size: int | None, device: str, precision: str,
              device_processing: bool | None, text_model: bool | None = None,
              memory_storage: str = MEMORY_STORAGE_DEFAULT) -> TorchBackend:
    """An MQC-SAM checkpoint carries its config; an explicit variant or size must agree with it."""
    from mqc_edge.model.checkpoint import load_checkpoint

    model, report = load_checkpoint(path, text_model=text_model)
    asked = {"sam2_variant": variant, "image_size": image_size}
    saved = {key: getattr(model.config, key) for key in asked}
    clashes = {key: (value, saved[key]) for key, value in asked.items() if value not in (None, saved[key])}
    if clashes:
        raise ConfigError(
            f"checkpoint {path}: asked for {', '.join(f'{k}={v[0]!r}' for k, v in clashes.items())}, "
            f"but it was saved with {', '.join(f'{k}={v[1]!r}' for k, v in clashes.items())}"
        )
    return TorchBackend(model, device, str(report), precision, device_processing, memory_storage)
