"""The shipped default: `default` resolves to a cached export that is verified, reused while
current and rebuilt when the weights (or the export) change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import mqc_edge.export
from mqc_edge.cli import main
from mqc_edge.default_model import (DEFAULT_MEMORY_STORAGE, DEFAULT_WEIGHTS, SOURCE_RECORD, cache_root, default_export,
                                   resolve_model)
from mqc_edge.errors import CheckpointError


@pytest.fixture
def exports(monkeypatch, exported) -> list[Path]:
    """Stand in for `export_model` (minutes of tracing) with a copy of the session's export; records calls."""
    calls: list[Path] = []

    def fake_export_model(checkpoint: Path, out: Path, memory_storage: str = "bfloat16", **_: object) -> dict:
        assert memory_storage == DEFAULT_MEMORY_STORAGE == "float32"
        calls.append(Path(checkpoint))
        shutil.copytree(exported[0], out)
        return json.loads((out / "manifest.json").read_text())

    monkeypatch.setattr(mqc_edge.export, "export_model", fake_export_model)
    return calls


def test_default_export_is_built_once_and_rebuilt_when_the_weights_change(tmp_path, exports) -> None:
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"first weights")
    cache = tmp_path / "cache"
    first = default_export(cache, weights, log=lambda _: None)
    assert first == cache / "default" and exports == [weights]
    assert default_export(cache, weights, log=lambda _: None) == first and len(exports) == 1
    weights.write_bytes(b"retrained weights")
    default_export(cache, weights, log=lambda _: None)
    assert len(exports) == 2
    record = json.loads((first / SOURCE_RECORD).read_text())
    assert record["weights_sha256"] == __import__("hashlib").sha256(b"retrained weights").hexdigest()
    assert record["memory_storage"] == "float32"


def test_a_cache_built_with_another_memory_storage_is_rebuilt(tmp_path, exports) -> None:
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"weights")
    target = default_export(tmp_path / "cache", weights, log=lambda _: None)
    record = json.loads((target / SOURCE_RECORD).read_text())
    (target / SOURCE_RECORD).write_text(json.dumps({**record, "memory_storage": "bfloat16"}, sort_keys=True) + "\n")
    default_export(tmp_path / "cache", weights, log=lambda _: None)
    assert len(exports) == 2 and json.loads((target / SOURCE_RECORD).read_text())["memory_storage"] == "float32"


def test_a_tampered_cached_export_is_rebuilt(tmp_path, exports) -> None:
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"weights")
    target = default_export(tmp_path / "cache", weights, log=lambda _: None)
    with open(target / "no_memory.onnx", "ab") as graph:
        graph.write(b"\0")
    default_export(tmp_path / "cache", weights, log=lambda _: None)
    assert len(exports) == 2


def test_the_cached_export_is_rebuilt_when_the_exporter_code_changes(tmp_path, exports, monkeypatch) -> None:
    import mqc_edge.default_model as default_model

    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"weights")
    target = default_export(tmp_path / "cache", weights, log=lambda _: None)
    assert json.loads((target / SOURCE_RECORD).read_text())["exporter_sha256"] == default_model.exporter_fingerprint()
    default_export(tmp_path / "cache", weights, log=lambda _: None)
    assert len(exports) == 1
    monkeypatch.setattr(default_model, "exporter_fingerprint", lambda: "0" * 64)  # e.g. a kernel rewritten
    default_export(tmp_path / "cache", weights, log=lambda _: None)
    assert len(exports) == 2


def test_the_exporter_fingerprint_covers_the_kernels(tmp_path, monkeypatch) -> None:
    import mqc_edge.default_model as default_model

    package = tmp_path / "mqc_edge"
    for name in default_model.EXPORTER_PACKAGES:
        (package / name).mkdir(parents=True)
        (package / name / "stage.py").write_text("x = 1\n")
    monkeypatch.setattr(default_model, "__file__", str(package / "default_model.py"))
    before = default_model.exporter_fingerprint()
    (package / "kernels" / "stage.py").write_text("x = 2\n")
    assert default_model.exporter_fingerprint() != before


def test_missing_default_weights_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="is not installed"):
        default_export(tmp_path, tmp_path / "absent.safetensors")


def test_default_resolves_paths_pass_through_and_cache_follows_the_environment(tmp_path) -> None:
    assert resolve_model(tmp_path / "model", tmp_path) == tmp_path / "model"
    assert cache_root({"MQC_EDGE_CACHE": "/x"}) == Path("/x")
    assert cache_root({"XDG_CACHE_HOME": "/y"}) == Path("/y/mqc-edge")
    assert cache_root({}) == Path.home() / ".cache" / "mqc-edge"


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="the trained default weights are not in this checkout")
def test_shipped_weights_fit_the_budget_and_load() -> None:
    from mqc_edge.model.checkpoint import load_checkpoint
    from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG

    assert DEFAULT_WEIGHTS.stat().st_size <= 25_000_000
    model, report = load_checkpoint(DEFAULT_WEIGHTS)
    assert model.config == DEFAULT_MODEL_CONFIG and report.fresh_parts == ()


@pytest.mark.slow
def test_demo_end_to_end_on_an_export(tmp_path, exported, capsys) -> None:
    code = main(["demo", "--model", str(exported[0]), "--out", str(tmp_path), "--videos", "1", "--frames", "6",
                 "--size", "128x128", "--threads", "1"])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("J&F", "J", "F", "fps", "ms_per_frame"):
        assert 0 <= report[key] < float("inf")
    assert {"image_encoder", "mask_decoder", "dami_attention"} <= set(report["stage_ms_median"])
    assert set(report["variants"]) == {"mqc", "sam2-box", "flow-gt-mask"}
    assert (tmp_path / "run" / "overlay.mp4").stat().st_size > 0 and (tmp_path / "run" / "strip.png").is_file()
    assert len(list((tmp_path / "run" / "masks").glob("*.png"))) == 6
    assert "BASELINE" in capsys.readouterr().out
    assert report["scheduling"] == "serial, 1 thread(s)"


@pytest.mark.slow
def test_demo_encode_ahead_gives_the_serial_masks(tmp_path, exported) -> None:
    runs = {}
    for name, extra in (("ahead", ["--encode-ahead"]), ("serial", [])):
        assert main(["demo", "--model", str(exported[0]), "--out", str(tmp_path / name), "--videos", "1",
                     "--frames", "5", "--size", "128x128", *extra]) == 0
        runs[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert runs["serial"]["scheduling"] == "serial, 2 thread(s)"
    assert runs["ahead"]["scheduling"] == "encode-ahead, 1 thread(s) per stage in flight"
    for variant in ("mqc", "sam2-box"):
        assert runs["ahead"]["variants"][variant]["J&F"] == runs["serial"]["variants"][variant]["J&F"]
    masks = sorted((tmp_path / "ahead" / "run" / "masks").glob("*.png"))
    assert len(masks) == 5
    for path in masks:
        assert path.read_bytes() == (tmp_path / "serial" / "run" / "masks" / path.name).read_bytes()


@pytest.mark.parametrize(("arguments", "expected"), [
    (["--checkpoint", "default"], "float32"),  # the shipped default's export, as its cache
    (["--checkpoint", "mine.safetensors"], "bfloat16"),  # any other checkpoint: as trained, as Meta's predictor
    (["--checkpoint", "default", "--memory-storage", "bfloat16"], "bfloat16"),
])
def test_export_chooses_the_memory_storage(monkeypatch, tmp_path, arguments: list[str], expected: str) -> None:
    chosen = []

    def fake_export_model(memory_storage: str, **_: object) -> dict:
        chosen.append(memory_storage)
        return {"parity": {"passed": True, "end_to_end": {}}, "stages": {}}

    monkeypatch.setattr(mqc_edge.export, "export_model", fake_export_model)
    assert main(["export", *arguments, "--out", str(tmp_path / "out")]) == 0
    assert chosen == [expected]
