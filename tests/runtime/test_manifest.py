"""manifest.json helpers, torch-free: geometry and signatures survive JSON."""

from __future__ import annotations

import json

import pytest

from mqc_edge.contract import MQCGeometry, ModelGeometry, stage_specs
from mqc_edge.errors import ManifestMismatchError
from mqc_edge.runtime.manifest import geometry_from_json, geometry_to_json, load_manifest, signature


@pytest.mark.parametrize("geometry", [ModelGeometry(image_size=256), ModelGeometry(mqc=MQCGeometry(text_tokens=16)),
                                      ModelGeometry(mqc=MQCGeometry(text_encoder=False))])
def test_geometry_and_signatures_survive_json(geometry: ModelGeometry) -> None:
    again = geometry_from_json(json.loads(json.dumps(geometry_to_json(geometry))))
    assert again == geometry
    for name, spec in stage_specs(geometry).items():
        assert json.loads(json.dumps(signature(spec))) == signature(stage_specs(again)[name])


def test_an_export_without_the_text_encoder_lacks_only_its_stage_and_older_manifests_have_it() -> None:
    with_text = stage_specs(ModelGeometry(mqc=MQCGeometry()))
    without = stage_specs(ModelGeometry(mqc=MQCGeometry(text_encoder=False)))
    assert set(with_text) - set(without) == {"text_encoder"} and "prompt_fusion" in without
    older = geometry_to_json(ModelGeometry(mqc=MQCGeometry()))
    del older["mqc"]["text_encoder"]  # a manifest written before the field existed
    assert geometry_from_json(older).mqc.text_encoder


def test_a_folder_without_manifest_is_not_an_export(tmp_path) -> None:
    with pytest.raises(ManifestMismatchError, match="manifest.json: no such file; expected an `mqc-edge export`"):
        load_manifest(tmp_path)


def test_a_file_rewritten_in_place_is_hashed_anew(tmp_path) -> None:
    """sha256_of remembers a digest per process; a same-size rewrite, even with its mtime put back,
    must not be served the old one."""
    import os

    from mqc_edge.runtime.manifest import sha256_of

    path = tmp_path / "stage.onnx"
    path.write_bytes(b"a" * 64)
    before = sha256_of(path)
    stamp = path.stat()
    path.write_bytes(b"b" * 64)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert sha256_of(path) != before
    assert sha256_of(path) == sha256_of(path)
