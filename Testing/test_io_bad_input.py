"""Bad input -> a CompassError subclass whose message names the file and the fault. Inputs are
made in the test (pydicom writers) or are copies of shared files, modified."""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from COMPASSLib.errors import CompassError, DoseError, GeometryError, InputError
from COMPASSLib.io import read_structures, read_volume
from COMPASSLib.io.ct import read_ct_series
from COMPASSLib.io.rtdose import read_rtdose
from COMPASSLib.io.rtstruct import read_rtstruct
from helpers_dicom import square, write_rtdose, write_rtstruct, write_series


def _ct(tmp_path, n=6, **kw):
    return write_series(tmp_path / "ct", np.zeros((n, 8, 8), np.int16), spacing=(2.0, 2.0, 3.0), **kw)


def test_missing_slice_in_real_series_names_file(tmp_path, shared_data):
    source = sorted((shared_data / "ibsi" / "sts" / "STS_002" / "CT" / "image").glob("*.dcm"))
    copies = []
    for f in source:
        shutil.copy(f, tmp_path / f.name)
        copies.append(tmp_path / f.name)
    positions = {f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in copies}
    ordered = sorted(copies, key=positions.get)
    ordered[20].unlink()
    with pytest.raises(GeometryError, match="missing slice") as err:
        read_ct_series([f for f in ordered if f.exists()], patient="STS_002")
    message = str(err.value)
    assert ordered[21].name in message and ordered[19].name in message
    assert err.value.file == str(ordered[21]) and "STS_002" in message


def test_uneven_spacing_names_file(tmp_path):
    positions = [(0, 0, z) for z in (0.0, 3.0, 6.0, 9.7, 12.7, 15.7)]
    files = _ct(tmp_path, positions=positions)
    with pytest.raises(GeometryError, match="uneven slice spacing") as err:
        read_ct_series(files)
    assert err.value.file is not None and err.value.file in str(err.value)


def test_duplicate_slice_position(tmp_path):
    files = _ct(tmp_path, positions=[(0, 0, z) for z in (0.0, 3.0, 3.0, 6.0, 9.0, 12.0)])
    with pytest.raises(GeometryError, match="same position"):
        read_ct_series(files)


def test_mixed_orientation(tmp_path):
    files = _ct(tmp_path, extra=lambda ds, z: setattr(ds, "ImageOrientationPatient", ["1", "0", "0", "0", "0.9950", "0.0998"]) if z == 2 else None)
    with pytest.raises(GeometryError, match="orientation") as err:
        read_ct_series(files)
    assert err.value.file.endswith(".dcm")


def test_two_series_given_as_one(tmp_path):
    a = write_series(tmp_path / "a", np.zeros((3, 4, 4), np.int16))
    b = write_series(tmp_path / "b", np.zeros((3, 4, 4), np.int16), origin=(0, 0, 6.0))
    with pytest.raises(InputError, match="SeriesInstanceUID"):
        read_ct_series(a + b)


def test_rtdose_without_dose_grid_scaling(tmp_path):
    path = write_rtdose(tmp_path / "RD_noscale.dcm", np.ones((3, 4, 4)), omit=("DoseGridScaling",))
    with pytest.raises(DoseError, match="DoseGridScaling") as err:
        read_rtdose(path, patient="P001", fraction=2)
    message = str(err.value)
    assert "RD_noscale.dcm" in message and "patient P001" in message and "fraction 2" in message


def test_rtdose_unknown_units(tmp_path):
    path = write_rtdose(tmp_path / "rd.dcm", np.ones((3, 4, 4)), units="MGY")
    with pytest.raises(DoseError, match="DoseUnits MGY"):
        read_rtdose(path)


def test_empty_roi_requested_by_name(tmp_path):
    ct = read_ct_series(_ct(tmp_path))
    path = write_rtstruct(tmp_path / "RS.dcm", {"Heart": [square(8, 8, 3.0, 4)], "Cord": []})
    with pytest.raises(InputError, match="ROI 'Cord' is empty") as err:
        read_rtstruct(path, ct, rois=["Heart", "Cord"])
    assert "RS.dcm" in str(err.value)
    # not asked for by name: left out, the rest still read
    assert list(read_rtstruct(path, ct)) == ["Heart"]


def test_roi_outside_grid_is_empty_not_a_crash(tmp_path):
    ct = read_ct_series(_ct(tmp_path))
    path = write_rtstruct(tmp_path / "RS.dcm", {"Far": [square(500, 500, 3.0, 4), square(8, 8, 300.0, 4)]})
    with pytest.raises(InputError, match="no voxel inside the reference grid"):
        read_rtstruct(path, ct, rois=["Far"])


def test_absent_roi_name(tmp_path):
    ct = read_ct_series(_ct(tmp_path))
    path = write_rtstruct(tmp_path / "RS.dcm", {"Heart": [square(8, 8, 3.0, 4)]})
    with pytest.raises(InputError, match=r"\['Lung'\] not in RTSTRUCT \(has: Heart\)"):
        read_rtstruct(path, ct, rois=["Lung"])


def test_mismatched_frame_of_reference(tmp_path):
    ct = read_ct_series(_ct(tmp_path))
    path = write_rtstruct(tmp_path / "RS_other.dcm", {"Heart": [square(8, 8, 3.0, 4)]}, frame="1.2.3.4.5")
    with pytest.raises(GeometryError, match="FrameOfReferenceUID 1.2.3.4.5") as err:
        read_rtstruct(path, ct)
    assert "RS_other.dcm" in str(err.value)


def test_resampling_across_frames_of_reference_refused(tmp_path):
    from COMPASSLib.geometry import resample_image

    ct = read_ct_series(_ct(tmp_path))
    dose = read_rtdose(write_rtdose(tmp_path / "rd.dcm", np.ones((3, 4, 4)), frame="9.9.9"))
    with pytest.raises(GeometryError, match="FrameOfReferenceUID 9.9.9"):
        resample_image(dose, ct)


@pytest.mark.parametrize("given, expected", [("pet", "PT"), ("dose", "RTDOSE")])
def test_wrong_modality(tmp_path, given, expected):
    files = _ct(tmp_path)
    with pytest.raises(InputError, match=f"wrong modality: expected {expected}, file holds CT") as err:
        read_volume(files if given == "pet" else files[:1], given, patient="P9", fraction=1)
    assert err.value.file.endswith(".dcm") and "patient P9" in str(err.value)


def test_rtdose_given_as_structures(tmp_path):
    ct = read_ct_series(_ct(tmp_path))
    path = write_rtdose(tmp_path / "rd.dcm", np.ones((3, 4, 4)))
    with pytest.raises(InputError, match="wrong modality: expected RTSTRUCT, file holds RTDOSE"):
        read_structures(path, ct)


def test_not_dicom(tmp_path):
    junk = tmp_path / "notes.dcm"
    junk.write_text("this is not DICOM\n")
    with pytest.raises(InputError, match="cannot read DICOM") as err:
        read_ct_series([junk])
    assert err.value.file == str(junk)


def test_unreadable_image_file(tmp_path):
    from COMPASSLib.io.images import read_image

    bad = tmp_path / "broken.nrrd"
    bad.write_text("NRRD0004\ntype: float\n")
    with pytest.raises(InputError, match="cannot read image") as err:
        read_image(bad)
    assert err.value.file == str(bad)


def test_errors_are_one_line_compass_errors(tmp_path):
    path = write_rtdose(tmp_path / "rd.dcm", np.ones((3, 4, 4)), omit=("DoseGridScaling",))
    with pytest.raises(CompassError) as err:
        read_rtdose(path)
    assert "\n" not in str(err.value)
