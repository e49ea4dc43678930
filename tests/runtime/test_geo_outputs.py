"""Georeferenced outputs (runtime/geo_outputs.py): pixel masks to map polygons, GeoTIFF masks that
keep the CRS, areas, speeds, and `run_video` writing them for georeferenced frames.

`python tests/runtime/test_geo_outputs.py` prints the bytes-per-frame table of docs/outputs.md.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
shapely = pytest.importorskip("shapely")

from mqc_edge.data.frames import Frame  # noqa: E402
from mqc_edge.data.georef import GeoReference  # noqa: E402
from mqc_edge.errors import BadFrameError  # noqa: E402
from mqc_edge.runtime.geo_outputs import (  # noqa: E402
    GEO_MASKS_DIR, SIMPLIFY_TOLERANCE_PX, SUMMARY_FILE, TRACK_FILE, GeoTrackWriter, mask_geometry, write_mask_geotiff)
from mqc_edge.runtime.multi_tracker import MultiTracker  # noqa: E402
from mqc_edge.runtime.outputs import RunWriter  # noqa: E402
from mqc_edge.runtime.run import run_video  # noqa: E402

UTM33 = rasterio.crs.CRS.from_epsg(32633).to_wkt()
WGS84 = rasterio.crs.CRS.from_epsg(4326).to_wkt()
HALF_METRE = (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)  # 0.5 m pixels, north up, origin (500000, 4000000)


def _georef(time: str | None = None, crs_wkt: str = UTM33, transform=HALF_METRE) -> GeoReference:
    return GeoReference(crs_wkt=crs_wkt, transform=transform, time=time)


def _rectangle(rows: slice, cols: slice, shape=(40, 60)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def _track(folder: Path, frames: list[tuple[np.ndarray, GeoReference]]) -> tuple[dict, dict]:
    """Write `frames` (mask, georef) through a GeoTrackWriter; return (track.geojson, track_summary.json)."""
    with GeoTrackWriter(folder, frames[0][1]) as writer:
        for index, (mask, georef) in enumerate(frames):
            writer.write_frame(f"{index:05d}", index, mask, 0.75, georef)
    return json.loads((folder / TRACK_FILE).read_text()), json.loads((folder / SUMMARY_FILE).read_text())


def test_a_rectangle_s_pixel_corners_map_to_its_map_corners() -> None:
    # rows 10..19, cols 20..39: x = 500000 + 0.5 * col, y = 4000000 - 0.5 * row at pixel corners
    geometry = mask_geometry(_rectangle(slice(10, 20), slice(20, 40)), _georef())
    assert geometry.geom_type == "Polygon" and geometry.exterior.is_ccw
    assert set(geometry.exterior.coords) == {(500010.0, 3999995.0), (500020.0, 3999995.0),
                                             (500020.0, 3999990.0), (500010.0, 3999990.0)}


def test_simplification_stays_within_its_tolerance_and_drops_the_staircase() -> None:
    disk = np.zeros((80, 80), np.uint8)
    cv2.circle(disk, (40, 40), 25, 1, -1)
    traced = mask_geometry(disk.astype(bool), _georef(), tolerance_px=0.0)
    simplified = mask_geometry(disk.astype(bool), _georef())
    assert SIMPLIFY_TOLERANCE_PX == 1.0 and len(simplified.exterior.coords) < len(traced.exterior.coords) / 2
    assert simplified.hausdorff_distance(traced) <= 1.0 * 0.5 + 1e-9  # 1 px of 0.5 m


def test_geotiff_mask_keeps_crs_transform_and_pixels(tmp_path) -> None:
    mask = _rectangle(slice(5, 12), slice(3, 30))
    write_mask_geotiff(tmp_path / "m.tif", mask, _georef())
    with rasterio.open(tmp_path / "m.tif") as dataset:
        assert dataset.count == 1 and dataset.dtypes == ("uint8",)
        assert dataset.crs.to_epsg() == 32633
        assert tuple(dataset.transform)[:6] == HALF_METRE
        np.testing.assert_array_equal(dataset.read(1), mask.astype(np.uint8) * 255)
    assert not list(tmp_path.glob(".*"))


def test_feature_gives_area_in_m2_and_the_collection_names_its_crs(tmp_path) -> None:
    track, _ = _track(tmp_path, [(_rectangle(slice(10, 20), slice(20, 40)), _georef(time="2024-05-01T10:00:00Z"))])
    assert track["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    assert rasterio.crs.CRS.from_wkt(track["crs_wkt"]).to_epsg() == 32633
    [feature] = track["features"]
    assert feature["properties"] == {"frame": "00000", "frame_index": 0, "time": "2024-05-01T10:00:00Z",
                                     "score": 0.75, "area_m2": 50.0}  # 200 px of 0.25 m2


def test_two_blobs_make_one_multipolygon(tmp_path) -> None:
    mask = _rectangle(slice(2, 6), slice(2, 6)) | _rectangle(slice(20, 30), slice(40, 50))
    track, _ = _track(tmp_path, [(mask, _georef())])
    geometry = shapely.geometry.shape(track["features"][0]["geometry"])
    assert geometry.geom_type == "MultiPolygon" and len(geometry.geoms) == 2
    assert sorted(part.area for part in geometry.geoms) == [4.0, 25.0]  # 16 px and 100 px of 0.25 m2


def test_a_frame_without_the_object_gets_a_geotiff_but_no_feature(tmp_path) -> None:
    present = _rectangle(slice(10, 20), slice(20, 40))
    track, summary = _track(tmp_path, [(present, _georef()), (np.zeros_like(present), _georef()), (present, _georef())])
    assert [feature["properties"]["frame"] for feature in track["features"]] == ["00000", "00002"]
    assert sorted(path.stem for path in (tmp_path / GEO_MASKS_DIR).glob("*.tif")) == ["00000", "00001", "00002"]
    assert summary["frames_written"] == 3 and summary["frames_present"] == 2
    assert summary["first_frame"]["frame"] == "00000" and summary["last_frame"]["frame"] == "00002"


def test_speed_from_two_frames_with_times(tmp_path) -> None:
    # 20 px (10 m) east in 2 s: 5 m/s; the centroid path is the two pixel-area centroids
    frames = [(_rectangle(slice(10, 20), slice(20, 40)), _georef(time="2024-05-01T10:00:00Z")),
              (_rectangle(slice(10, 20), slice(40, 60)), _georef(time="2024-05-01T10:00:02Z"))]
    _, summary = _track(tmp_path, frames)
    assert summary["centroid_path"] == {"type": "LineString",
                                        "coordinates": [[500015.0, 3999992.5], [500025.0, 3999992.5]]}
    assert summary["path_length_m"] == 10.0 and summary["mean_speed_m_per_s"] == 5.0
    assert summary["speed_unavailable"] is None


def test_speed_is_null_with_the_reason_when_times_are_missing(tmp_path) -> None:
    frames = [(_rectangle(slice(10, 20), slice(20, 40)), _georef()),
              (_rectangle(slice(10, 20), slice(40, 60)), _georef())]
    _, summary = _track(tmp_path, frames)
    assert summary["path_length_m"] == 10.0 and summary["mean_speed_m_per_s"] is None
    assert summary["speed_unavailable"] == "frame 00000 carries no acquisition time"


def test_a_geographic_crs_gives_null_area_and_speed(tmp_path) -> None:
    degrees = (1e-5, 0.0, 15.0, 0.0, -1e-5, 36.0)
    frames = [(_rectangle(slice(10, 20), slice(20, 40)), _georef("2024-05-01T10:00:00", WGS84, degrees)),
              (_rectangle(slice(10, 20), slice(40, 60)), _georef("2024-05-01T10:00:02", WGS84, degrees))]
    track, summary = _track(tmp_path, frames)
    assert [feature["properties"]["area_m2"] for feature in track["features"]] == [None, None]
    assert track["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4326"
    corners = track["features"][0]["geometry"]["coordinates"][0]
    assert [15.0002, 35.9999] in corners and [15.0004, 35.9998] in corners  # col 20..40, row 10..20 at 1e-5 deg
    assert summary["mean_speed_m_per_s"] is None and summary["path_length_m"] is None
    assert "not projected" in summary["speed_unavailable"]


def test_a_frame_in_another_crs_is_refused(tmp_path) -> None:
    mask = _rectangle(slice(10, 20), slice(20, 40))
    with GeoTrackWriter(tmp_path, _georef()) as writer:
        with pytest.raises(BadFrameError, match="frame 00001: CRS differs from the video's first frame"):
            writer.write_frame("00001", 1, mask, 0.5, _georef(crs_wkt=WGS84))
    assert json.loads((tmp_path / TRACK_FILE).read_text())["features"] == []


def _video(georef: bool) -> list[Frame]:
    """Four 24x32 frames, a bright 8x10 block moving 2 px right a frame, 1 s apart."""
    frames = []
    for t in range(4):
        rgb = np.zeros((24, 32, 3), np.uint8)
        rgb[8:16, 6 + 2 * t:16 + 2 * t] = 250
        reference = _georef(time=f"2024-05-01T10:00:0{t}Z") if georef else None
        frames.append(Frame(f"{t:05d}", rgb, reference))
    return frames


def test_run_video_writes_geo_outputs_for_georeferenced_frames(fake_backend, tmp_path) -> None:
    out = tmp_path / "out"
    prompts = [{"box": [6, 8, 16, 16]}, {"box": [0, 0, 31, 23]}]
    assert run_video(MultiTracker(fake_backend), _video(georef=True), out, prompts) == 4
    for folder in (out / "obj1", out / "obj2"):
        track = json.loads((folder / TRACK_FILE).read_text())
        summary = json.loads((folder / SUMMARY_FILE).read_text())
        pngs = {path.stem: cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in (folder / "masks").glob("*.png")}
        assert sorted(pngs) == ["00000", "00001", "00002", "00003"]
        for name, png in pngs.items():
            with rasterio.open(folder / GEO_MASKS_DIR / f"{name}.tif") as dataset:
                np.testing.assert_array_equal(dataset.read(1), png)
                assert dataset.crs.to_epsg() == 32633
        present = [name for name, png in sorted(pngs.items()) if png.any()]
        assert [feature["properties"]["frame"] for feature in track["features"]] == present
        assert summary["frames_written"] == 4 and summary["frames_present"] == len(present)
    assert not list(out.rglob(".*"))


def test_geo_outputs_get_the_mode_the_umask_gives(fake_backend, tmp_path) -> None:
    previous = os.umask(0o027)
    try:
        run_video(MultiTracker(fake_backend), _video(georef=True), tmp_path / "out", [{"box": [6, 8, 16, 16]}])
    finally:
        os.umask(previous)
    files = [tmp_path / "out" / name for name in (TRACK_FILE, SUMMARY_FILE, f"{GEO_MASKS_DIR}/00002.tif")]
    assert [oct(stat.S_IMODE(path.stat().st_mode)) for path in files] == [oct(0o640)] * 3


def test_run_video_keeps_plain_frames_free_of_geo_outputs_and_refuses_a_mix(fake_backend, tmp_path) -> None:
    frames = [(frame.name, frame.rgb) for frame in _video(georef=False)]
    run_video(MultiTracker(fake_backend), frames, tmp_path / "plain", [{"box": [6, 8, 16, 16]}])
    assert (tmp_path / "plain" / "masks" / "00003.png").is_file() and not (tmp_path / "plain" / TRACK_FILE).exists()
    mixed = _video(georef=True)
    mixed[2] = Frame(mixed[2].name, mixed[2].rgb)
    with pytest.raises(BadFrameError, match="frame 00002: has no georeference, unlike the video's first frame"):
        run_video(MultiTracker(fake_backend), mixed, tmp_path / "mixed", [{"box": [6, 8, 16, 16]}])
    assert (tmp_path / "mixed" / TRACK_FILE).is_file() and (tmp_path / "mixed" / SUMMARY_FILE).is_file()


def test_geotiff_frames_from_iter_frames_reach_the_geo_outputs(fake_backend, tmp_path) -> None:
    """The whole path: GeoTIFF files -> iter_frames (Frame.georef) -> run_video -> outputs in the source CRS."""
    from mqc_edge.data.frames import iter_frames

    for frame in _video(georef=True):
        profile = {"driver": "GTiff", "width": 32, "height": 24, "count": 3, "dtype": "uint8",
                   "crs": "EPSG:32633", "transform": rasterio.Affine(*HALF_METRE)}
        with rasterio.open(tmp_path / f"{frame.name}.tif", "w", **profile) as dataset:
            dataset.write(frame.rgb.transpose(2, 0, 1))
            dataset.update_tags(ACQUISITIONDATETIME=frame.georef.time)
    out = tmp_path / "out"
    run_video(MultiTracker(fake_backend), iter_frames(tmp_path), out, [{"box": [6, 8, 16, 16]}])
    track = json.loads((out / TRACK_FILE).read_text())
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert track["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633" and track["features"]
    assert track["features"][0]["properties"]["time"].startswith("2024-05-01T10:00:00")
    with rasterio.open(out / GEO_MASKS_DIR / "00003.tif") as dataset:
        assert dataset.crs.to_epsg() == 32633 and tuple(dataset.transform)[:6] == HALF_METRE
    first_feature = track["features"][0]["properties"]
    assert summary["frames_written"] == 4 and summary["first_frame"]["frame"] == first_feature["frame"]


def test_the_runtime_imports_without_rasterio_and_shapely() -> None:
    code = ("import sys; sys.modules['rasterio'] = None; sys.modules['shapely'] = None\n"
            "import mqc_edge.runtime.run, mqc_edge.runtime.geo_outputs as g\n"
            "from mqc_edge.data.georef import GeoReference\n"
            "import numpy as np\n"
            "try:\n"
            "    g.mask_geometry(np.ones((2, 2), bool), GeoReference('', (1, 0, 0, 0, -1, 0)))\n"
            "except g.ConfigError as error:\n"
            "    print(error)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'mqc-edge[geo]'" in done.stdout


def _vehicle_masks() -> dict[str, np.ndarray]:
    """A 20x10 px car at 30 degrees and a 60x60 px aircraft (fuselage and wings) at 20 degrees, 1920x1080."""
    def rotated(points: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
        angle = np.deg2rad(degrees)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return np.round(points @ rotation.T + centre).astype(np.int32)

    car = np.zeros((1080, 1920), np.uint8)
    cv2.fillPoly(car, [rotated(np.array([[-10, -5], [10, -5], [10, 5], [-10, 5]], float), 30, (700, 400))], 1)
    aircraft = np.zeros((1080, 1920), np.uint8)
    fuselage = np.array([[-4, -30], [4, -30], [4, 30], [-4, 30]], float)
    wings = np.array([[-30, -2], [30, -2], [30, 8], [-30, 8]], float)
    tail = np.array([[-10, 22], [10, 22], [10, 28], [-10, 28]], float)
    cv2.fillPoly(aircraft, [rotated(shape, 20, (1200, 600)) for shape in (fuselage, wings, tail)], 1)
    return {"car 20x10 px": car.astype(bool), "aircraft 60x60 px": aircraft.astype(bool)}


def output_bytes_per_frame(mask: np.ndarray, folder: Path) -> dict[str, int]:
    """Bytes one frame of `mask` adds to each output form, measured on the files the writers write."""
    with RunWriter(folder / "plain") as writer:
        writer.write_frame("00000", mask, {"frame_index": 0, "score": 0.91})
    for name, frame_mask in (("empty", np.zeros_like(mask)), ("geo", mask)):
        with GeoTrackWriter(folder / name, _georef(time="2024-05-01T10:00:00Z")) as writer:
            writer.write_frame("00000", 0, frame_mask, 0.91, _georef(time="2024-05-01T10:00:00Z"))
    return {
        "COCO RLE entry (masks_coco_rle.json)": (folder / "plain" / "masks_coco_rle.json").stat().st_size - 2,
        "GeoJSON feature (track.geojson)": ((folder / "geo" / TRACK_FILE).stat().st_size
                                            - (folder / "empty" / TRACK_FILE).stat().st_size),
        "PNG mask (masks/)": (folder / "plain" / "masks" / "00000.png").stat().st_size,
        "GeoTIFF mask (masks_geo/)": (folder / "geo" / GEO_MASKS_DIR / "00000.tif").stat().st_size,
    }


def test_every_output_form_is_measured_and_vector_forms_beat_rasters(tmp_path) -> None:
    for label, mask in _vehicle_masks().items():
        sizes = output_bytes_per_frame(mask, tmp_path / label.split()[0])
        assert all(size > 0 for size in sizes.values())
        vector = (sizes["COCO RLE entry (masks_coco_rle.json)"], sizes["GeoJSON feature (track.geojson)"])
        assert max(vector) < min(sizes["PNG mask (masks/)"], sizes["GeoTIFF mask (masks_geo/)"])


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        table = {label: output_bytes_per_frame(mask, Path(scratch) / label.split()[0])
                 for label, mask in _vehicle_masks().items()}
    print("| output form | " + " | ".join(table) + " |")
    print("|---|" + "---:|" * len(table))
    for form in next(iter(table.values())):
        print(f"| {form} | " + " | ".join(str(sizes[form]) for sizes in table.values()) + " |")
