"""The memory guard (COMPASSLib/memory.py, docs/input_checks.md): operations whose memory grows with the kernel
size, the grid size or the organ count estimate it first and are refused with a CompassError above the limit
(COMPASS_MEMORY_LIMIT, `compass --memory-limit`, else 80 % of the available memory), naming the operation,
the estimate, the limit and how to raise it; normal inputs pass."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from COMPASSLib import memory
from COMPASSLib.cli import main
from COMPASSLib.errors import CompassError, FeatureError, InputError
from helpers_dicom import write_rtdose, write_series

GIB = 2 ** 30


@pytest.fixture
def limit(monkeypatch):
    """Set COMPASS_MEMORY_LIMIT for one test."""
    def set_(value):
        monkeypatch.setenv(memory.ENV, value)
    monkeypatch.delenv(memory.ENV, raising=False)
    return set_


def test_sizes_parse_in_binary_units():
    assert memory.parse_size("8G") == 8 * GIB
    assert memory.parse_size("512MiB") == 512 * 2 ** 20
    assert memory.parse_size("2.5g") == int(2.5 * GIB)
    assert memory.parse_size("1e9") == 10 ** 9
    assert memory.parse_size("50%") == ("share", 0.5)
    assert memory.parse_size("off") is None
    for bad in ("lots", "-1G", "0", "150%", "8 X"):
        with pytest.raises(CompassError, match="memory limit"):
            memory.parse_size(bad)
    assert memory.format_bytes(1536) == "1.5 KiB" and memory.format_bytes(3 * GIB) == "3 GiB"


def test_default_limit_is_a_share_of_the_available_memory(limit, monkeypatch):
    monkeypatch.setattr(memory, "_meminfo_available", lambda: (10 * GIB, "MemAvailable, /proc/meminfo"))
    monkeypatch.setattr(memory, "_cgroup_room", lambda: None)
    value, source = memory.limit_bytes()
    assert value == int(0.8 * 10 * GIB) and "80 % of the 10 GiB available (MemAvailable" in source
    monkeypatch.setattr(memory, "_cgroup_room", lambda: 2 * GIB)          # a container allows less
    value, source = memory.limit_bytes()
    assert value == int(0.8 * 2 * GIB) and "cgroup" in source
    limit("25%")
    assert memory.limit_bytes()[0] == int(0.25 * 2 * GIB)
    limit("3G")
    assert memory.limit_bytes() == (3 * GIB, "COMPASS_MEMORY_LIMIT=3G")
    limit("off")
    assert memory.limit_bytes()[0] is None
    memory.check("anything", 1e15)                                        # no limit: passes


def test_real_meminfo_gives_a_limit(limit):
    value, source = memory.limit_bytes()
    assert value is None or (value > 0 and "available" in source)


def test_check_refuses_with_operation_estimate_limit_and_how_to_raise_it(limit):
    limit("1G")
    memory.check("small job", 0.5 * GIB)                                  # under the limit: passes
    with pytest.raises(FeatureError) as err:
        memory.check("texture maps (kernel radius 9)", 3 * GIB, hint="use a smaller kernel radius",
                     error=FeatureError, patient="P1", fraction=2)
    text = str(err.value)
    assert "texture maps (kernel radius 9) needs an estimated 3 GiB of memory" in text
    assert "above the limit of 1 GiB (COMPASS_MEMORY_LIMIT=1G)" in text and "use a smaller kernel radius" in text
    assert "COMPASS_MEMORY_LIMIT" in text.split("to allow more")[1] and "patient P1" in text and "\n" not in text
    with pytest.raises(CompassError):
        memory.check("a broken estimate", float("nan"))


def test_texture_radius_50_is_refused_before_any_allocation(limit):
    from COMPASSLib.features.texture_maps import texture_maps

    image = np.random.default_rng(0).normal(30, 5, (30, 30, 30)).astype(np.float32)
    mask = np.zeros(image.shape, np.uint8)
    mask[10:20, 10:20, 10:20] = 1
    assert texture_maps(image, mask, "glcm:Contrast", radius=1, bin_width=2.0)["glcm:Contrast"].shape == image.shape
    limit("4G")
    with pytest.raises(FeatureError, match=r"texture maps \(kernel radius 50: 1030301 positions .* needs an "
                                           r"estimated .* above the limit of 4 GiB") as err:
        texture_maps(image, mask, "glcm:Contrast", radius=50, bin_width=2.0)
    assert "--radius" in str(err.value)
    limit("1M")      # radius 1 under a tiny limit: the estimate covers the chunks of every kernel size
    with pytest.raises(FeatureError, match="radius 1"):
        texture_maps(image, mask, "glcm:Contrast", radius=1, bin_width=2.0)


def test_compass_texture_radius_50_and_the_memory_limit_option(tmp_path, capsys, limit):
    image = sitk.GetImageFromArray(np.random.default_rng(1).normal(30, 5, (20, 20, 20)).astype(np.float32))
    mask = sitk.GetImageFromArray((np.indices((20, 20, 20)).sum(0) % 3 == 0).astype(np.uint8))
    sitk.WriteImage(image, str(tmp_path / "bed.nrrd"))
    sitk.WriteImage(mask, str(tmp_path / "organ.nrrd"))
    argv = ["texture", "--image", str(tmp_path / "bed.nrrd"), "--mask", str(tmp_path / "organ.nrrd"),
            "--bin-width", "2", "-o", str(tmp_path / "maps")]
    assert main(argv + ["--radius", "50"]) == 2                 # the default limit (80 % of what is available)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kernel radius 50" in err and "COMPASS_MEMORY_LIMIT" in err
    assert main(["--memory-limit", "1M"] + argv) == 2
    assert "COMPASS_MEMORY_LIMIT=1M" in capsys.readouterr().err
    assert main(["--memory-limit", "lots"] + argv) == 2
    assert "not a size" in capsys.readouterr().err
    assert not (tmp_path / "maps").exists()
    assert main(argv) == 0 and (tmp_path / "maps" / "texture_maps.json").is_file()


def test_a_series_header_announcing_a_huge_grid_is_refused_before_allocation(tmp_path, limit):
    from COMPASSLib.io import read_grid, read_volume

    files = write_series(tmp_path / "ct", np.zeros((4, 8, 8), np.int16), spacing=(1.0, 1.0, 2.0))
    assert read_grid(files, "ct").GetSize() == (8, 8, 4)
    for f in files:                     # a malformed header: 65535 x 65535 pixels per slice
        ds = pydicom.dcmread(f)
        ds.Rows = ds.Columns = 65535
        ds.save_as(f)
    limit("8G")
    for read in (lambda: read_grid(files, "ct", patient="P1", fraction=3),
                 lambda: read_volume(files, "ct", patient="P1", fraction=3)):
        with pytest.raises(InputError, match=r"CT series of 65535 x 65535 x 4 voxels .* needs an estimated") as err:
            read()
        assert "Rows (0028,0010)" in str(err.value) and "patient P1" in str(err.value) and err.value.file


def test_an_rtdose_header_announcing_a_huge_grid_is_refused(tmp_path, limit):
    from COMPASSLib.io.rtdose import read_rtdose

    path = write_rtdose(tmp_path / "rd.dcm", np.full((3, 4, 5), 2.0))
    assert read_rtdose(path).GetSize() == (5, 4, 3)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 3000
    ds.GridFrameOffsetVector = [str(3 * k) for k in range(3000)]
    ds.Rows = ds.Columns = 4000
    ds.save_as(path)
    limit("8G")
    with pytest.raises(InputError, match=r"RTDOSE grid of 4000 x 4000 x 3000 voxels .* needs an estimated"):
        read_rtdose(path, patient="P1", fraction=1)


def test_ingest_and_features_refuse_grid_times_images_and_organs(small_cohort, limit):
    from COMPASSLib.features.fraction import PatientContext, _check_memory
    from COMPASSLib.features.settings import FeatureSettings
    from COMPASSLib.ingest import PatientLoader

    loader = PatientLoader(small_cohort, "SYN001", organs=["Heart", "Esophagus", "SpinalCord"])
    images = loader.load(1)                                          # the default limit: passes
    limit("64K")
    with pytest.raises(InputError, match=r"fraction images on the reference grid \(.* voxels, 3 image\(s\), 3 organ "
                                         r"mask\(s\)\) needs an estimated") as err:
        loader.load(2)
    assert err.value.patient == "SYN001" and err.value.fraction == 2
    ctx = PatientContext("SYN001", [f"Organ{i}" for i in range(40)], FeatureSettings(profile="fast"))
    with pytest.raises(FeatureError, match=r"cumulative BED maps of 40 organ\(s\) on a .* grid needs"):
        _check_memory(ctx, 1, images.dose)
    limit("off")
    _check_memory(ctx, 1, images.dose)


def test_cgroup_room_counts_reclaimable_page_cache_as_free(tmp_path, monkeypatch):
    (tmp_path / "memory.max").write_text(f"{16 * GIB}\n")
    (tmp_path / "memory.current").write_text(f"{15 * GIB}\n")
    (tmp_path / "memory.stat").write_text(f"anon {3 * GIB}\nfile {12 * GIB}\ninactive_file {10 * GIB}\n")
    monkeypatch.setattr(memory, "_CGROUP", tmp_path)
    assert memory._cgroup_room() == 11 * GIB          # 16 - (15 - 10 reclaimable)
    (tmp_path / "memory.max").write_text("max\n")
    assert memory._cgroup_room() is None
