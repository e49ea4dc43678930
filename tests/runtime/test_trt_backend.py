"""The native TensorRT backend's slot: registered by name, and a one-line error that says what is missing."""

from __future__ import annotations

import pytest

from mqc_edge.cli import main
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.backends import trt_backend
from mqc_edge.runtime.backends.stage_backend import load_backend


def test_missing_packages_are_named_with_the_working_alternative(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(trt_backend, "_importable", lambda module: module.startswith("cuda"))
    with pytest.raises(ConfigError, match=r"needs tensorrt \(pip install 'mqc-edge\[gpu\]'\)") as caught:
        load_backend("tensorrt", export_dir=tmp_path, threads=2)
    assert "cuda-python" not in str(caught.value) and "--backend onnxruntime-trt" in str(caught.value)
    monkeypatch.setattr(trt_backend, "_importable", lambda module: False)
    assert trt_backend.missing_packages() == ["tensorrt", "cuda-python"]


def test_with_the_packages_present_it_says_engines_are_not_built_yet(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(trt_backend, "_importable", lambda module: True)
    with pytest.raises(ConfigError, match="engines are built by the precision issue's `mqc-edge build`"):
        load_backend("tensorrt", export_dir=tmp_path)


def test_importable_tells_present_from_absent_modules() -> None:
    assert trt_backend._importable("json") and not trt_backend._importable("no_such_pkg_mqc.sub")


def test_run_with_backend_tensorrt_is_one_line(tmp_path, capsys) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifest.json").write_text("{}")  # an export directory as far as choosing the backend goes
    code = main(["run", "--checkpoint", str(model), "--backend", "tensorrt", "--video", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--box", "1", "2", "30", "40"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mqc-edge: error: backend 'tensorrt' for ")
    assert "Traceback" not in err[0]
