"""Sample -> image -> model input, checked against an independent transcription of the
reference steps, and the image cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from lib.core.files import NotEnoughSpaceError
from lib.data import images
from lib.data.dataset import DataError, load_competition
from lib.data.images import (
    build_image_cache,
    cache_bytes,
    cache_path,
    check_cache_space,
    model_input,
    sample_image,
    sample_image_pandas,
    two_channel,
)

NORMS = ("none", "mass", "time")
TRANSFORMS = ("log", "log1p")


def reference_model_input(image: np.ndarray, norm: str, transform: str) -> np.ndarray:
    """method.md 2.1, 2.3-2.5 done the way the original code lays data out: (m, t, 3) float32
    with the derivatized flag as channel 0/1 and an unused all-zero third channel."""
    single = image.sum(axis=0)  # one channel is empty
    derivatized = int(image[1].any())
    x = np.repeat(single[:, :, None], 3, axis=-1).astype(np.float32)
    x[:, :, 1 - derivatized] = 0
    x[:, :, 2] = 0
    if norm != "none":
        axis = 1 if norm == "mass" else 0
        x = x / np.clip(np.max(x, axis=axis, keepdims=True), 1e-4, None)
    x = np.clip(x / x.max(), 1e-4, 1.0)
    if transform == "log1p":
        x = np.log10(x / np.max(x) * 1000 + 1)
        x = x / np.max(x)
    else:
        x = np.log10(x)
    x = (x - x.min()) / (x - x.min()).max()
    return np.moveaxis(x[..., :2], -1, 0)


def write_csv(tmp_path: Path, rows: list[tuple[float, float, float]]) -> Path:
    path = tmp_path / "S0000.csv"
    lines = ["time,mass,intensity"] + [f"{t},{m},{i}" for t, m, i in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_render_by_hand(tmp_path):
    path = write_csv(tmp_path, [
        (1.0, 4.0, 1e9),      # helium: dropped
        (1.0, 11.6, 10),      # -> mass 12, time bin 0
        (1.0, 12.3, 30),      # -> mass 12, time bin 0 (summed: 40)
        (2.0, 255.4, 20),     # -> mass 255, last bin
        (2.0, 255.6, 1e9),    # -> mass 256: outside, dropped
        (1.5, 20.0, 10),      # -> mass 20, middle: round(0.5 * 3) = 2
        (3.0, 300.0, 1e9),    # dropped; time span is over KEPT rows only
    ])
    image = sample_image(path, derivatized=True, m_bins=256, t_bins=4)
    assert image.shape == (2, 256, 4) and image.dtype == np.float32
    assert not image[0].any()
    expected = np.zeros((256, 4))
    expected[12, 0], expected[255, 3], expected[20, 2] = 40, 20, 10
    np.testing.assert_array_equal(image[1], expected / 40)


@pytest.mark.parametrize("rows, message", [
    ([(1.0, 4.0, 5), (2.0, 300.0, 5)], "no rows left after keeping masses 0..255"),
    ([(1.0, 12.0, 5), (1.0, 13.0, 5), (2.0, 300.0, 1)], "one time value"),
    ([(1.0, 12.0, 0), (2.0, 13.0, float("nan"))], "every kept intensity is zero"),
])
def test_render_errors(tmp_path, rows, message):
    path = write_csv(tmp_path, rows)
    with pytest.raises(DataError, match=message) as info:
        sample_image(path, derivatized=False)
    assert str(path) in str(info.value)


def test_sample_image_matches_pandas_groupby(competition_dir):
    data = load_competition(competition_dir)
    for path, flag in zip(data.metadata["path"], data.metadata["derivatized"]):
        fast = sample_image(path, bool(flag))
        np.testing.assert_array_equal(fast, sample_image_pandas(path, bool(flag)))
        assert fast[1 - flag].max() == 0 and fast[flag].max() == 1


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_model_input_matches_reference(competition_dir, norm, transform):
    data = load_competition(competition_dir)
    for path, flag in zip(data.metadata["path"], data.metadata["derivatized"]):
        image = sample_image(path, bool(flag))
        x = model_input(image, norm=norm, transform=transform)
        assert x.dtype == np.float32 and x.shape == image.shape
        assert np.isfinite(x).all() and x.min() == 0 and x.max() == pytest.approx(1)
        assert not x[1 - flag].any()
        np.testing.assert_allclose(x, reference_model_input(image, norm, transform), atol=1e-6)


def test_model_input_batch_equals_items(competition_dir):
    data = load_competition(competition_dir)
    batch = np.stack([sample_image(p, bool(f)) for p, f in
                      zip(data.metadata["path"][:4], data.metadata["derivatized"][:4])])
    batched = model_input(batch, norm="time", transform="log1p")
    for item, out in zip(batch, batched):
        np.testing.assert_array_equal(model_input(item, norm="time", transform="log1p"), out)


def test_unknown_norm_and_transform():
    image = two_channel(np.ones((8, 6), np.float32), False)
    with pytest.raises(ValueError, match="norm must be one of"):
        model_input(image, norm="mass_time")
    with pytest.raises(ValueError, match="transform must be one of"):
        model_input(image, transform="sqrt")


def test_two_channel_batch():
    singles = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    out = two_channel(singles, np.array([0, 1]))
    assert out.shape == (2, 2, 3, 4)
    np.testing.assert_array_equal(out[0, 0], singles[0])
    np.testing.assert_array_equal(out[1, 1], singles[1])
    assert not out[0, 1].any() and not out[1, 0].any()


def test_cache_builds_reuses_and_rebuilds(competition_dir, tmp_path, monkeypatch):
    data = load_competition(competition_dir)
    path = cache_path(tmp_path / "cache", 32, 16)
    calls = []
    render = images._render_one
    monkeypatch.setattr(images, "_render_one", lambda job: calls.append(job) or render(job))

    first = build_image_cache(data.metadata, path, m_bins=32, t_bins=16, workers=1,
                              progress=False)
    assert len(calls) == 15 and path.is_file()
    assert first["images"].shape == (15, 32, 16) and first["images"].dtype == np.float32
    assert first["sample_ids"].tolist() == data.metadata["sample_id"].tolist()
    assert first["derivatized"].tolist() == data.metadata["derivatized"].tolist()
    assert not any(p.name.endswith(".partial") for p in path.parent.iterdir())
    expected = sample_image(data.metadata["path"][3], True, m_bins=32, t_bins=16)[1]
    np.testing.assert_array_equal(first["images"][3], expected)

    again = build_image_cache(data.metadata, path, m_bins=32, t_bins=16, workers=1,
                              progress=False)
    assert len(calls) == 15  # reused, nothing rendered
    np.testing.assert_array_equal(again["images"], first["images"])

    changed = data.metadata["path"][5]
    os.utime(changed, ns=(1, 1))
    build_image_cache(data.metadata, path, m_bins=32, t_bins=16, workers=1, progress=False)
    assert len(calls) == 30  # an input changed: rebuilt

    build_image_cache(data.metadata, path, m_bins=32, t_bins=24, workers=1, progress=False)
    assert len(calls) == 45  # another key (same file name on purpose): rebuilt


def test_cache_parallel_equals_serial(competition_dir, tmp_path):
    data = load_competition(competition_dir)
    serial = build_image_cache(data.metadata, tmp_path / "a.npz", m_bins=64, t_bins=32,
                               workers=1, progress=False)
    parallel = build_image_cache(data.metadata, tmp_path / "b.npz", m_bins=64, t_bins=32,
                                 workers=2, progress=False)
    np.testing.assert_array_equal(serial["images"], parallel["images"])
    assert serial["fingerprint"] == parallel["fingerprint"]


RENDER_AFTER_GO = """
import sys, time
from pathlib import Path
from lib.data.dataset import load_competition
from lib.data.images import build_image_cache
data_dir, cache, go = sys.argv[1:]
metadata = load_competition(data_dir).metadata
while not Path(go).exists():
    time.sleep(0.01)
build_image_cache(metadata, cache, m_bins=64, t_bins=32, workers=1, progress=True)
"""


@pytest.mark.slow
def test_runs_starting_together_render_a_fresh_cache_once(competition_dir, tmp_path):
    """Two processes (two runs of a sweep) ask for the same fresh cache at the same moment:
    one renders it (tqdm says "rendering images"), the other waits and reads its file."""
    import subprocess
    import sys

    from lib.core.paths import REPO_ROOT

    cache, go = tmp_path / "cache" / "images.npz", tmp_path / "go"
    runs = [subprocess.Popen([sys.executable, "-c", RENDER_AFTER_GO, str(competition_dir),
                              str(cache), str(go)], cwd=REPO_ROOT, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    time.sleep(3)  # both have imported and loaded the metadata, and wait for the signal
    go.touch()
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert sum("rendering images" in text for text in errors) == 1, errors
    assert images.load_image_cache(cache)["images"].shape == (15, 64, 32)


def test_a_truncated_run_stops_the_cache_and_leaves_the_old_one_intact(competition_dir, tmp_path):
    data = load_competition(competition_dir)
    path = cache_path(tmp_path / "cache", 32, 16)
    build_image_cache(data.metadata, path, m_bins=32, t_bins=16, workers=2, progress=False)
    before = path.read_bytes()
    cut = data.metadata["path"][7]
    text = cut.read_bytes()
    cut.write_bytes(text[:text.index(b"\n", len(text) // 2) + 6])  # stops 5 bytes into a row
    with pytest.raises(DataError, match=rf"{cut}: row \d+: cut short"):
        build_image_cache(data.metadata, path, m_bins=32, t_bins=16, workers=2, progress=False)
    assert path.read_bytes() == before  # every other sample's image is still there
    assert [p.name for p in path.parent.iterdir() if p.suffix != ".lock"] == [path.name]


def test_a_cache_its_disk_cannot_hold_is_refused_before_rendering(competition_dir, tmp_path):
    data = load_competition(competition_dir)
    huge = (10**6, 10**6)  # 4 TB an image: more than any test disk
    folder = tmp_path / "cache" / "data"
    with pytest.raises(NotEnoughSpaceError, match=rf"{folder}: the image cache needs about "
                                                  r"[\d.]+ GB and its disk has [\d.]+ GB free"):
        check_cache_space(data.metadata, folder, [(32, 16), huge])
    with pytest.raises(NotEnoughSpaceError, match=rf"{folder}: the image cache needs"):
        build_image_cache(data.metadata, cache_path(folder, *huge), m_bins=huge[0],
                          t_bins=huge[1], workers=1, progress=False)
    assert not any(folder.glob("*.npz"))
    check_cache_space(data.metadata, folder, [(32, 16)])  # a small one fits
    assert cache_bytes(1584, 256, 192) == pytest.approx(1584 * 256 * 192 * 4, rel=0.01)
