"""Device memory and one stream for the TensorRT backend, through cuda-python's runtime API.

`cuda.bindings.runtime` (cuda-python >= 12.6; the old `from cuda import cudart` is gone in
cuda-bindings 13, DESIGN section 6) returns `(error, *values)` from every call; `check` turns a
failed one into one line naming the call and CUDA's error name. Every copy and kernel of an
executor goes on its one stream, in order, so a buffer handed back to the pool and out again is
never overwritten before the work that read it has run; only `download` waits for the device.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from mqc_edge.errors import CudaError


def check(cudart: Any, result: Any, call: str) -> Any:
    """The values of a cuda-python result `(error, *values)`: None, one value or a tuple of them.

    Raises CudaError "CUDA <call> failed: <cudaErrorName>: <description>" unless error is cudaSuccess."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        name = _text(cudart.cudaGetErrorName(error))
        raise CudaError(f"CUDA {call} failed: {name}: {_text(cudart.cudaGetErrorString(error))}")
    return None if not values else values[0] if len(values) == 1 else tuple(values)


def _text(result: Any) -> str:
    value = result[-1] if isinstance(result, tuple) else result
    return value.decode() if isinstance(value, bytes) else str(value)


class _Allocation:
    """One cudaMalloc block; when the last tensor on it is dropped its address returns to the pool."""

    def __init__(self, memory: "DeviceMemory", ptr: int, nbytes: int) -> None:
        self.ptr, self.nbytes = ptr, nbytes
        finalizer = weakref.finalize(self, memory.release, ptr, nbytes)
        finalizer.atexit = False  # the process ending frees device memory; CUDA may be gone by then


@dataclass(eq=False)
class DeviceTensor:
    """A backend handle: a C-contiguous `shape` of `dtype` at device address `ptr`; `owner` (the
    allocation, shared by views) keeps the memory alive."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    owner: _Allocation

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def view(self, offset_bytes: int, shape: tuple[int, ...]) -> "DeviceTensor":
        """A tensor inside this one (same memory, no copy), e.g. one object of a batch."""
        return DeviceTensor(self.ptr + offset_bytes, shape, self.dtype, self.owner)


class DeviceMemory:
    """cudaMalloc'd tensors reused by size, host <-> device and device copies on `stream`."""

    def __init__(self, cudart: Any) -> None:
        self.cudart = cudart
        self.stream = self._call("cudaStreamCreate")
        self._pool: dict[int, list[int]] = {}
        self._closed = False

    def _call(self, name: str, *args: Any) -> Any:
        return check(self.cudart, getattr(self.cudart, name)(*args), name)

    @property
    def stream_handle(self) -> int:
        """The stream as the integer TensorRT's `execute_async_v3` takes."""
        return int(self.stream)

    def empty(self, shape: tuple[int, ...], dtype: Any, prefer: int | None = None) -> DeviceTensor:
        """Uninitialised device tensor; a freed block of the same byte size is reused first, the
        block at `prefer` if it is free (a stage output keeps the address its engine has bound)."""
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)  # cudaMalloc(0) gives no address
        free = self._pool.get(nbytes, [])
        if prefer in free:
            free.remove(prefer)
            ptr = prefer
        else:
            ptr = free.pop() if free else int(self._call("cudaMalloc", nbytes))
        return DeviceTensor(ptr, tuple(int(d) for d in shape), dtype, _Allocation(self, ptr, nbytes))

    def release(self, ptr: int, nbytes: int) -> None:
        """An allocation's finalizer: back to the pool, or cudaFree once the memory is closed."""
        if self._closed:
            self._call("cudaFree", ptr)
        else:
            self._pool.setdefault(nbytes, []).append(ptr)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> DeviceTensor:
        tensor = self.empty(shape, dtype)
        self._call("cudaMemsetAsync", tensor.ptr, 0, tensor.nbytes, self.stream)
        return tensor

    def upload(self, array: np.ndarray, into: DeviceTensor | None = None) -> DeviceTensor:
        """Host -> device: a new tensor, or `into` (same shape and dtype) overwritten in place."""
        array = np.ascontiguousarray(array)
        target = into if into is not None else self.empty(array.shape, array.dtype)
        if into is not None and (into.shape != array.shape or into.dtype != array.dtype):
            raise CudaError(f"upload into {into.dtype}{list(into.shape)}: got {array.dtype}{list(array.shape)}")
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        # pageable host memory: the call returns once the array is staged, so it may be freed after
        self._call("cudaMemcpyAsync", target.ptr, array.ctypes.data, array.nbytes, kind, self.stream)
        return target

    def download(self, tensor: DeviceTensor) -> np.ndarray:
        """Device -> host; waits for the stream, so every stage before it has run."""
        array = np.empty(tensor.shape, tensor.dtype)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", array.ctypes.data, tensor.ptr, tensor.nbytes, kind, self.stream)
        self.synchronize()
        return array

    def copy(self, dst_ptr: int, src_ptr: int, nbytes: int) -> None:
        """Device -> device, `nbytes` bytes, ordered on the stream."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._call("cudaMemcpyAsync", dst_ptr, src_ptr, nbytes, kind, self.stream)

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self.stream)

    def close(self) -> None:
        """Wait for the stream, free the pooled blocks (live tensors free theirs when dropped)."""
        if self._closed:
            return
        self.synchronize()
        self._closed = True
        for ptrs in self._pool.values():
            for ptr in ptrs:
                self._call("cudaFree", ptr)
        self._pool.clear()
        self._call("cudaStreamDestroy", self.stream)


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU engines are built for and the CUDA versions (cudaRuntimeGetVersion: 12080 = 12.8)."""

    name: str
    compute_capability: str  # "8.7" (Jetson Orin), "9.0" (H100/H200)
    runtime_version: int
    driver_version: int


def device_info(cudart: Any, device: int = 0) -> DeviceInfo:
    """Name and compute capability of `device`, CUDA runtime and driver versions; CudaError without a GPU."""
    props = check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    return DeviceInfo(
        name=_text(props.name).rstrip("\x00"),
        compute_capability=f"{props.major}.{props.minor}",
        runtime_version=int(check(cudart, cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")),
        driver_version=int(check(cudart, cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")),
    )
