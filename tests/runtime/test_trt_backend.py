"""The native TensorRT backend's glue, run on FAKE `tensorrt` and `cuda.bindings.runtime` modules.

The fakes are small but real enough that a stage executes through the backend's code path:
"device" memory is host memory handed out by a fake cudaMalloc (a dict of int pointers ->
numpy byte arrays, so copies with offsets really move bytes), and a fake engine computes every
output as mean(first input) + 1 from the bytes at its bound addresses. A real-GPU test runs
only where TensorRT and a CUDA device exist.
"""

from __future__ import annotations

import ctypes
import enum
import json
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mqc_edge.cli import main
from mqc_edge.contract import ModelGeometry, stage_specs
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.backends import trt_backend, trt_engine
from mqc_edge.runtime.backends.cuda_buffers import CudaError
from mqc_edge.runtime.backends.stage_backend import load_backend
from mqc_edge.runtime.manifest import FORMAT, geometry_to_json, sha256_of, signature, write_manifest

GEOMETRY = ModelGeometry(image_size=64, hidden_dim=32, mem_dim=8)
"""SAM 2 mode stages only, 4 x 4 features: small enough to run every stage in a millisecond."""
STREAM = 7
NP_TYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


class CudaErr(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2


class FakeCudart(types.ModuleType):
    """`cuda.bindings.runtime` on host memory; `fail[name]` makes that call return an error."""

    cudaError_t = CudaErr
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2, cudaMemcpyDeviceToDevice=3)
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self, capability: tuple[int, int] = (8, 7)) -> None:
        super().__init__("cuda.bindings.runtime")
        self.capability, self.blocks, self.calls, self.fail = capability, {}, [], {}
        self.copies: list[int] = []  # memcpy kinds in call order
        self.capturing: list | None = None

    def _ok(self, name: str, *values):
        self.calls.append(name)
        return (self.fail.get(name, CudaErr.cudaSuccess), *values)

    def _device(self, ptr: int, count: int) -> None:
        """A device address must lie with its whole range inside one block cudaMalloc gave out."""
        assert any(base <= ptr and ptr + count <= base + block.size for base, block in self.blocks.items()), ptr

    def _stream_op(self, op) -> None:
        self.capturing.append(op) if self.capturing is not None else op()

    def cudaMalloc(self, size: int):
        block = np.zeros(size, np.uint8)
        self.blocks[block.ctypes.data] = block
        return self._ok("cudaMalloc", block.ctypes.data)

    def cudaFree(self, ptr: int):
        self.blocks.pop(ptr)
        return self._ok("cudaFree")

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: int, stream):
        assert int(stream) == STREAM
        if kind != self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            self._device(src, count)
        if kind != self.cudaMemcpyKind.cudaMemcpyDeviceToHost:
            self._device(dst, count)
        self.copies.append(kind)
        self._stream_op(lambda: ctypes.memmove(dst, src, count))
        return self._ok("cudaMemcpyAsync")

    def cudaMemsetAsync(self, ptr: int, value: int, count: int, stream):
        self._device(ptr, count)
        self._stream_op(lambda: ctypes.memset(ptr, value, count))
        return self._ok("cudaMemsetAsync")

    def cudaStreamCreate(self):
        return self._ok("cudaStreamCreate", _Stream())

    def cudaStreamSynchronize(self, stream):
        return self._ok("cudaStreamSynchronize")

    def cudaStreamDestroy(self, stream):
        return self._ok("cudaStreamDestroy")

    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing = []
        return self._ok("cudaStreamBeginCapture")

    def cudaStreamEndCapture(self, stream):
        graph, self.capturing = self.capturing, None
        return self._ok("cudaStreamEndCapture", graph)

    def cudaGraphInstantiate(self, graph, flags):
        return self._ok("cudaGraphInstantiate", list(graph))

    def cudaGraphLaunch(self, graph_exec, stream):
        for op in graph_exec:
            op()
        return self._ok("cudaGraphLaunch")

    def cudaGraphExecDestroy(self, graph_exec):
        return self._ok("cudaGraphExecDestroy")

    def cudaGraphDestroy(self, graph):
        return self._ok("cudaGraphDestroy")

    def cudaGetDeviceProperties(self, device: int):
        major, minor = self.capability
        return self._ok("cudaGetDeviceProperties", SimpleNamespace(name=b"Fake GPU", major=major, minor=minor))

    def cudaRuntimeGetVersion(self):
        return self._ok("cudaRuntimeGetVersion", 12080)

    def cudaDriverGetVersion(self):
        return self._ok("cudaDriverGetVersion", 12090)

    def cudaGetErrorName(self, error):
        return CudaErr.cudaSuccess, CudaErr(error).name.encode()

    def cudaGetErrorString(self, error):
        return CudaErr.cudaSuccess, b"out of memory" if error == CudaErr.cudaErrorMemoryAllocation else b"invalid"


class _Stream:
    def __int__(self) -> int:
        return STREAM


def _host_view(ptr: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * count).from_address(ptr), dtype).reshape(shape)


class FakeTrt(types.ModuleType):
    """`tensorrt` 10.x or 11.x (11 has no FP16/INT8 builder flags); engines are JSON of what the
    builder was asked, and run mean(first input) + 1 into every output."""

    Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity: None})
    NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=5)
    MemoryPoolType = SimpleNamespace(WORKSPACE=0)
    TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")

    def __init__(self, version: str, cudart: FakeCudart) -> None:
        super().__init__("tensorrt")
        self.__version__, self.cudart = version, cudart
        if version.startswith("10."):
            self.BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8")
        self.address_calls: list[tuple[str, str, int]] = []
        self.executed: list[tuple[str, int]] = []
        self.deserialized = 0

    @staticmethod
    def nptype(dtype: str):
        return NP_TYPES[dtype]

    def Builder(self, logger):
        return FakeBuilder()

    def OnnxParser(self, network, logger):
        return SimpleNamespace(parse_from_file=network.parse, num_errors=0)

    def Runtime(self, logger):
        return SimpleNamespace(deserialize_cuda_engine=self._deserialize)

    def _deserialize(self, data: bytes):
        self.deserialized += 1
        return FakeEngine(self, json.loads(data)["stage"])


class FakeBuilder:
    def create_network(self, flags: int):
        return FakeNetwork(flags)

    def create_builder_config(self):
        return FakeConfig()

    def create_optimization_profile(self):
        profile = SimpleNamespace(shapes={})
        profile.set_shape = lambda name, *min_opt_max: profile.shapes.__setitem__(name, min_opt_max)
        return profile

    def build_serialized_network(self, network, config) -> bytes:
        return json.dumps({"stage": network.stage, "network_flags": network.flags, "flags": config.flags,
                           "profile": config.profile.shapes}).encode()


class FakeNetwork:
    def __init__(self, flags: int) -> None:
        self.flags, self.stage, self.inputs = flags, None, []

    def parse(self, path: str) -> bool:
        self.stage = Path(path).stem
        self.inputs = [SimpleNamespace(name=t.name) for t in stage_specs(GEOMETRY)[self.stage].inputs]
        return True

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int):
        return self.inputs[index]


class FakeConfig:
    def __init__(self) -> None:
        self.flags: list[str] = []

    def set_flag(self, flag: str) -> None:
        self.flags.append(flag)

    def set_memory_pool_limit(self, pool, size: int) -> None:
        pass

    def create_timing_cache(self, data: bytes):
        return data

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> None:
        pass

    def get_timing_cache(self):
        return SimpleNamespace(serialize=lambda: b"timings")

    def add_optimization_profile(self, profile) -> None:
        self.profile = profile


class FakeEngine:
    def __init__(self, trt: FakeTrt, stage: str) -> None:
        self.trt, self.spec = trt, stage_specs(GEOMETRY)[stage]
        self.tensors = {t.name: t for t in self.spec.inputs + self.spec.outputs}
        self.names = [t.name for t in self.spec.inputs + self.spec.outputs]
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> str:
        return "input" if name in {t.name for t in self.spec.inputs} else "output"

    def get_tensor_dtype(self, name: str) -> str:
        return self.tensors[name].dtype

    def create_execution_context(self):
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name: str, shape) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        sizes = {}
        for tensor in self.engine.spec.inputs:
            sizes.update((d, got) for d, got in zip(tensor.shape, self.shapes[tensor.name]) if isinstance(d, str))
        return self.engine.tensors[name].resolved(sizes).shape

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.engine.trt.address_calls.append((self.engine.spec.name, name, ptr))
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream: int) -> bool:
        self.engine.trt.executed.append((self.engine.spec.name, stream))
        spec, addresses = self.engine.spec, dict(self.addresses)
        shapes = {t.name: self.get_tensor_shape(t.name) for t in spec.outputs}

        def compute() -> None:
            first = spec.inputs[0]
            value = _host_view(addresses[first.name], self.shapes[first.name], NP_TYPES[first.dtype]).mean() + 1
            for tensor in spec.outputs:
                _host_view(addresses[tensor.name], shapes[tensor.name], NP_TYPES[tensor.dtype])[...] = value

        self.engine.trt.cudart._stream_op(compute)
        return True


def write_fake_export(root: Path, precisions: dict[str, str] | None = None) -> Path:
    """An export directory `load_manifest` accepts: one (fake) ONNX file per stage of GEOMETRY."""
    root.mkdir(parents=True, exist_ok=True)
    stages = {}
    for name, spec in stage_specs(GEOMETRY).items():
        (root / f"{name}.onnx").write_bytes(f"graph of {name}".encode())
        stages[name] = {"file": f"{name}.onnx", "precision": (precisions or {}).get(name, "fp32"), **signature(spec)}
    files = {f"{name}.onnx": sha256_of(root / f"{name}.onnx") for name in stages}
    write_manifest(root, {"files": files, "model": {"geometry": geometry_to_json(GEOMETRY)}, "stages": stages,
                          "versions": {}})
    return root


def install_fakes(monkeypatch, version: str = "10.3.0", capability: tuple[int, int] = (8, 7)) -> tuple[FakeTrt, FakeCudart]:
    """Put fake tensorrt and cuda.bindings.runtime into sys.modules for this test."""
    cudart = FakeCudart(capability)
    trt = FakeTrt(version, cudart)
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    for name, module in {"tensorrt": trt, "cuda": types.ModuleType("cuda"), "cuda.bindings": bindings,
                         "cuda.bindings.runtime": cudart}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return trt, cudart


@pytest.fixture
def fake_export(tmp_path) -> Path:
    return write_fake_export(tmp_path / "model", {"image_encoder": "fp16"})


def _load(export: Path, engines: str = "build-missing"):
    return load_backend("tensorrt", export_dir=export, threads=2, engines=engines)


def test_missing_packages_are_named_with_the_working_alternative(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(trt_backend, "_importable", lambda module: module.startswith("cuda"))
    with pytest.raises(ConfigError, match=r"needs tensorrt \(pip install 'mqc-edge\[gpu\]'\)") as caught:
        load_backend("tensorrt", export_dir=tmp_path, threads=2)
    assert "cuda-python" not in str(caught.value) and "--backend onnxruntime-trt" in str(caught.value)
    monkeypatch.setattr(trt_backend, "_importable", lambda module: False)
    assert trt_backend.missing_packages() == ["tensorrt", "cuda-python"]


def test_importable_tells_present_from_absent_modules(monkeypatch) -> None:
    assert trt_backend._importable("json") and not trt_backend._importable("no_such_pkg_mqc.sub")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # blocked, as a broken install would be
    assert not trt_backend._importable("tensorrt")


def test_without_engines_it_says_how_to_build_them(monkeypatch, fake_export) -> None:
    trt, _ = install_fakes(monkeypatch)
    with pytest.raises(ConfigError, match=rf"no TensorRT engines .* `mqc-edge doctor {fake_export}`"):
        _load(fake_export, engines="check")
    assert trt.deserialized == 0


def test_a_stage_runs_on_the_device_and_its_outputs_stay_there(monkeypatch, fake_export) -> None:
    trt, cudart = install_fakes(monkeypatch)
    backend = _load(fake_export)
    record = json.loads((fake_export / "tensorrt" / "engines.json").read_text())
    assert (record["tensorrt"], record["compute_capability"], record["gpu"]) == ("10.3.0", "8.7", "Fake GPU")
    assert record["stages"]["image_encoder"]["onnx_sha256"] == sha256_of(fake_export / "image_encoder.onnx")
    assert (fake_export / "tensorrt" / "timing.cache").read_bytes() == b"timings"
    image = backend.from_host(np.full((1, 3, 64, 64), 2.0, np.float32))
    copies_before, syncs_before = len(cudart.copies), cudart.calls.count("cudaStreamSynchronize")
    outputs = backend.run("image_encoder", {"image": image})
    assert trt.executed == [("image_encoder", STREAM)]
    assert len(cudart.copies) == copies_before and cudart.calls.count("cudaStreamSynchronize") == syncs_before
    assert backend.executor.describe(outputs["feat"]) == ((1, 32, 4, 4), "float32")
    assert np.all(backend.to_host(outputs["feat"]) == 3.0)  # mean(image) + 1, computed by the fake engine
    assert cudart.copies[-1] == cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
    assert cudart.calls.count("cudaStreamSynchronize") == syncs_before + 1


def test_tensor_addresses_are_set_once_per_buffer(monkeypatch, fake_export) -> None:
    trt, _ = install_fakes(monkeypatch)
    backend = _load(fake_export)
    image = backend.from_host(np.ones((1, 3, 64, 64), np.float32))
    backend.run("image_encoder", {"image": image})  # outputs dropped: their blocks return to the pool
    first = len(trt.address_calls)
    for _ in range(3):
        backend.run("image_encoder", {"image": image})  # same input, outputs reuse the pooled blocks
    assert first == 4 and len(trt.address_calls) == first  # image + 3 outputs, bound on the first call only
    other = backend.from_host(np.ones((1, 3, 64, 64), np.float32))
    kept = backend.run("image_encoder", {"image": other})  # a new input buffer is bound, once
    assert [call[1] for call in trt.address_calls[first:]] == ["image"] and kept["feat"].ptr


@pytest.mark.parametrize(("change", "message"), [
    ("onnx", r"stage image_encoder source image_encoder.onnx SHA-256 differs"),
    ("version", r"engines built for tensorrt 10.3.0, this host has 10.4.1"),
    ("gpu", r"engines built for compute_capability 8.7, this host has 9.0"),
])
def test_the_engine_manifest_refuses_a_changed_host_or_graph_before_deserialising(monkeypatch, tmp_path, change,
                                                                                    message) -> None:
    export = write_fake_export(tmp_path / "model")
    install_fakes(monkeypatch)
    _load(export).close()
    if change == "onnx":  # a re-export: new graph bytes, the export manifest updated to match
        (export / "image_encoder.onnx").write_bytes(b"another graph")
        content = json.loads((export / "manifest.json").read_text())
        content["files"]["image_encoder.onnx"] = sha256_of(export / "image_encoder.onnx")
        (export / "manifest.json").write_text(json.dumps(content))
    trt, _ = install_fakes(monkeypatch, version="10.4.1" if change == "version" else "10.3.0",
                           capability=(9, 0) if change == "gpu" else (8, 7))
    with pytest.raises(ConfigError, match=message) as caught:
        _load(export, engines="check")
    assert len(str(caught.value).splitlines()) == 1
    assert f"rebuild with `mqc-edge doctor {export} --rebuild-engines`" in str(caught.value)
    assert trt.deserialized == 0
    _load(export, engines="rebuild")  # the named fix works
    assert trt.deserialized == len(stage_specs(GEOMETRY))


def test_a_changed_precision_or_engine_file_is_refused(monkeypatch, tmp_path) -> None:
    install_fakes(monkeypatch)
    export = write_fake_export(tmp_path / "model")
    _load(export).close()
    write_fake_export(export, {"mask_decoder": "fp16"})  # the same graphs, now recorded as an FP16 build
    with pytest.raises(ConfigError, match="stage mask_decoder precision differs .built fp32, now fp16."):
        _load(export, engines="check")
    _load(export, engines="rebuild").close()
    with open(export / "tensorrt" / "no_memory.engine", "ab") as engine:
        engine.write(b" ")
    with pytest.raises(ConfigError, match="stage no_memory engine file SHA-256 differs"):
        _load(export, engines="check")


def test_a_dynamic_int8_stage_is_refused_by_name_before_any_engine_is_built(monkeypatch, tmp_path) -> None:
    trt, _ = install_fakes(monkeypatch)
    export = write_fake_export(tmp_path / "model", {"mask_decoder": "int8-dynamic"})
    with pytest.raises(ConfigError, match=r"TensorRT cannot run stages \{'mask_decoder': 'int8-dynamic'\}") as caught:
        _load(export)
    assert len(str(caught.value).splitlines()) == 1
    assert not (export / "tensorrt").exists() and trt.deserialized == 0


def _built_flags(export: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_bytes()) for path in (export / "tensorrt").glob("*.engine")}


def test_tensorrt_10_sets_the_fp16_flag_only_on_fp16_stages(monkeypatch, fake_export) -> None:
    install_fakes(monkeypatch, version="10.3.0")
    _load(fake_export)
    built = _built_flags(fake_export)
    assert (built["image_encoder"]["network_flags"], built["image_encoder"]["flags"]) == (0, ["FP16"])
    assert all(built[name]["flags"] == [] for name in built if name != "image_encoder")
    assert json.loads((fake_export / "tensorrt" / "engines.json").read_text())["strongly_typed"] is False


def test_tensorrt_11_builds_strongly_typed_networks_without_precision_flags(monkeypatch, fake_export) -> None:
    trt, _ = install_fakes(monkeypatch, version="11.1.0")
    assert not hasattr(trt, "BuilderFlag")  # removed in TensorRT 11: touching it would raise
    _load(fake_export)
    built = _built_flags(fake_export)
    assert all(entry["flags"] == [] and entry["network_flags"] == 1 << 5 for entry in built.values())
    assert json.loads((fake_export / "tensorrt" / "engines.json").read_text())["strongly_typed"] is True
    assert trt_engine.precision_flags(trt, "int8") == ()


def test_a_cuda_error_code_becomes_one_line(monkeypatch, fake_export) -> None:
    _, cudart = install_fakes(monkeypatch)
    backend = _load(fake_export)
    cudart.fail["cudaMalloc"] = CudaErr.cudaErrorMemoryAllocation
    with pytest.raises(CudaError) as caught:
        backend.from_host(np.zeros((1, 1000), np.float32))
    assert str(caught.value) == "CUDA cudaMalloc failed: cudaErrorMemoryAllocation: out of memory"


def test_a_cuda_error_in_run_is_one_line_on_the_command_line(monkeypatch, fake_export, capsys) -> None:
    """The error is an MqcEdgeError, so the CLI prints it as one line with exit 2."""
    _, cudart = install_fakes(monkeypatch)
    cudart.fail["cudaGetDeviceProperties"] = CudaErr.cudaErrorInvalidValue
    code = main(["run", "--checkpoint", str(fake_export), "--backend", "tensorrt", "--video", str(fake_export),
                 "--out", str(fake_export.parent / "out"), "--box", "1", "2", "30", "40"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == ("mqc-edge: error: CUDA cudaGetDeviceProperties failed: "
                                         "cudaErrorInvalidValue: invalid")


def test_slots_batches_and_splits_are_device_copies(monkeypatch, fake_export) -> None:
    _, cudart = install_fakes(monkeypatch)
    backend = _load(fake_export)
    memory_spec = stage_specs(GEOMETRY)["memory_attention"].input("memory").resolved({"objects": 1})
    bank = backend.zeros(memory_spec)  # [1, 7, 8, 4, 4]
    value = backend.from_host(np.full((1, 8, 4, 4), 5.0, np.float32))
    a = backend.from_host(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = backend.from_host(np.full((1, 3), 9.0, np.float32))
    before = len(cudart.copies)
    backend.write_slot(bank, 3, value)
    batch = backend.concat([a, b])
    parts = backend.split(batch)
    device_to_device = cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
    assert cudart.copies[before:] == [device_to_device] * 3  # no host round trip
    host = backend.to_host(bank)
    assert np.all(host[0, 3] == 5.0) and not host[0, [0, 1, 2, 4, 5, 6]].any()
    assert np.array_equal(backend.to_host(batch), np.concatenate([np.arange(6.0).reshape(2, 3), np.full((1, 3), 9.0)]))
    assert [backend.to_host(p).tolist() for p in parts] == [[[0, 1, 2]], [[3, 4, 5]], [[9, 9, 9]]]
    assert parts[1].ptr == batch.ptr + 12  # a view: one row of 3 float32 in, no copy
    with pytest.raises(Exception, match="write_slot: slot 7"):
        backend.write_slot(bank, 7, value)


def test_a_captured_step_replays_with_new_inputs_without_enqueueing_again(monkeypatch, fake_export) -> None:
    trt, cudart = install_fakes(monkeypatch)
    backend = _load(fake_export)
    image = backend.from_host(np.full((1, 3, 64, 64), 1.0, np.float32))
    step = backend.capture(["image_encoder", "no_memory"], {"image": image})
    executed = len(trt.executed)  # the warm-up run and the captured enqueue: 2 stages each
    assert executed == 4 and cudart.calls.count("cudaGraphInstantiate") == 1
    backend.executor.copy_from_host(image, np.full((1, 3, 64, 64), 5.0, np.float32))
    step.launch()
    assert len(trt.executed) == executed and cudart.calls.count("cudaGraphLaunch") == 1
    assert np.all(backend.to_host(step.outputs["image_encoder"]["feat"]) == 6.0)
    assert np.all(backend.to_host(step.outputs["no_memory"]["feat_conditioned"]) == 7.0)  # chained on the device
    step.close()


def test_run_with_backend_tensorrt_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(trt_backend, "_importable", lambda module: False)
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifest.json").write_text("{}")  # an export directory as far as choosing the backend goes
    code = main(["run", "--checkpoint", str(model), "--backend", "tensorrt", "--video", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--box", "1", "2", "30", "40"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mqc-edge: error: backend 'tensorrt' for ")
    assert "Traceback" not in err[0]


def _real_gpu_reason() -> str | None:
    """Why the real-GPU test cannot run here, or None."""
    missing = trt_backend.missing_packages()
    if missing:
        return f"needs {', '.join(missing)} (pip install 'mqc-edge[gpu]') and a CUDA device"
    from cuda.bindings import runtime as cudart

    error, count = cudart.cudaGetDeviceCount()
    return None if error == cudart.cudaError_t.cudaSuccess and count > 0 else "no CUDA device visible"


@pytest.mark.gpu
def test_real_tensorrt_matches_onnxruntime_on_a_clip(request, tmp_path) -> None:
    reason = _real_gpu_reason()
    if reason:
        pytest.skip(reason)
    from mqc_edge.doctor import compare_masks, track_clip

    export = tmp_path / "model"
    shutil.copytree(request.getfixturevalue("exported")[0], export)
    reference = track_clip(export, "onnxruntime", frames=8)
    engines = track_clip(export, "tensorrt", frames=8, engines="build-missing")
    assert compare_masks(reference.masks, engines.masks)["iou_mean"] >= 0.995


def test_profiles_come_from_the_contract_with_ranges_only_on_symbolic_dims(monkeypatch, fake_export) -> None:
    install_fakes(monkeypatch)
    _load(fake_export)
    built = _built_flags(fake_export)
    assert built["image_encoder"]["profile"] == {"image": [[1, 3, 64, 64]] * 3}
    assert built["memory_attention"]["profile"]["memory"] == [[1, 7, 8, 4, 4], [1, 7, 8, 4, 4], [16, 7, 8, 4, 4]]
    assert built["mask_decoder"]["profile"]["sparse_prompt"] == [[1, 1, 32], [1, 2, 32], [16, 8, 32]]


def test_the_tracker_through_the_captured_frame_step_equals_its_stage_calls(monkeypatch, fake_export) -> None:
    """`TrackerConfig.frame_step` on TensorRT: one graph launch per tracking frame, nothing enqueued
    anew, and the results of the stage-by-stage Tracker (the fake engines chain the frame's pixels
    through every stage, so a stale static input would show)."""
    from mqc_edge.runtime.config import TrackerConfig
    from mqc_edge.runtime.tracker import Tracker

    trt, cudart = install_fakes(monkeypatch)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 80, 3), dtype=np.uint8) for _ in range(5)]
    runs = {}
    for frame_step in (False, True):
        tracker = Tracker(_load(fake_export), TrackerConfig(mode="sam2", frame_step=frame_step))
        runs[frame_step] = [*tracker.start(frames[0], box=[4, 4, 30, 20]), *(tracker.step(f)[0] for f in frames[1:])]
        if frame_step:
            enqueued = len(trt.executed)
            tracker.step(frames[0])
            assert len(trt.executed) == enqueued  # a replay enqueues no stage
    assert cudart.calls.count("cudaGraphLaunch") == len(frames)  # 4 tracked frames + the one above
    lowres = [[r.logits_lowres for r in runs[flag]] for flag in (False, True)]
    for staged, stepped in zip(*lowres):
        np.testing.assert_array_equal(stepped, staged)
    assert len({float(a.mean()) for a in lowres[1]}) == len(frames)  # every frame its own value
    assert "frame_step" in runs[True][1].timings_ms and "memory_attention" not in runs[True][1].timings_ms
