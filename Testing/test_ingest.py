"""ingest.load_fraction on a cohort written as DICOM in the test and grouped by `scan`: every volume
on the planning-CT grid, values in HU / SUV / Gy, masks under canonical organ names."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib.errors import InputError
from COMPASSLib.geometry import same_grid
from COMPASSLib.ingest import load_fraction, load_patient_reference
from helpers_dicom import SUV_HAND
from helpers_scan import build_tree


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from COMPASSLib.scan import scan

    tree = build_tree(tmp_path_factory.mktemp("ingest"))
    path = tree.parent / "cohort.json"
    scan(tree, manifest_path=path).save(path)
    return path


@pytest.fixture(scope="module")
def fraction1(manifest):
    return load_fraction(manifest, "P001", 1)


def _at(image, xyz_mm):
    return sitk.GetArrayViewFromImage(image)[image.TransformPhysicalPointToIndex(xyz_mm)[::-1]]


def test_everything_on_the_planning_ct_grid(fraction1):
    f = fraction1
    assert (f.patient, f.fraction) == ("P001", 1)
    assert f.reference.GetSize() == (16, 16, 8)
    assert f.reference.GetSpacing() == pytest.approx((2.0, 2.0, 3.0)) and f.reference.GetOrigin() == (0, 0, 0)
    for image in (f.ct, f.pet, f.dose, *f.masks.values()):
        assert same_grid(image, f.reference, tol=0)
    assert f.ct.GetPixelID() == f.pet.GetPixelID() == f.dose.GetPixelID() == sitk.sitkFloat32


def test_values_in_hu_suv_gy(fraction1):
    f = fraction1
    inside = (10.0, 10.0, 9.0)
    assert _at(f.ct, inside) == pytest.approx(100.0)          # the fraction CT, not the planning CT (40)
    assert _at(f.ct, (0.0, 0.0, 0.0)) == -1000.0               # outside the fraction CT's field: air
    assert _at(f.pet, inside) == pytest.approx(SUV_HAND, rel=2e-5)
    assert _at(f.dose, inside) == pytest.approx(2.0, abs=1e-4)


def test_fraction_structures_renamed_to_canonical(fraction1):
    # fraction 1's own RTSTRUCT: Heart square centred (16, 15), half 5 -> 5 x 6 voxels on 3 planes
    assert list(fraction1.masks) == ["Heart"]
    assert sitk.GetArrayViewFromImage(fraction1.masks["Heart"]).sum() == 5 * 6 * 3


def test_missing_pet_and_planning_structures(manifest, caplog):
    with caplog.at_level(logging.WARNING, logger="COMPASSLib.ingest"):
        f = load_fraction(manifest, "P001", 2)
    assert f.pet is None
    assert any("P001" in r.getMessage() and "fraction 2" in r.getMessage() and "PET" in r.getMessage()
               for r in caplog.records)
    assert _at(f.ct, (10.0, 10.0, 9.0)) == pytest.approx(40.0)       # no fraction CT: the planning CT
    assert _at(f.dose, (10.0, 10.0, 9.0)) == pytest.approx(1.8, abs=1e-4)
    # planning RTSTRUCT; 'Couch' maps to no organ and is left out
    assert sorted(f.masks) == ["Heart", "SpinalCord"]
    assert sitk.GetArrayViewFromImage(f.masks["Heart"]).sum() == 6 * 6 * 3
    assert sitk.GetArrayViewFromImage(f.masks["SpinalCord"]).sum() == 2 * 2 * 8


def test_manifest_organ_map_wins(manifest):
    from COMPASSLib.cohort import Cohort

    cohort = Cohort.load(manifest)
    cohort.patient("P001").organs.update({"Couch": "BODY", "Heart": None})
    f = load_fraction(cohort, "P001", 2)
    assert sorted(f.masks) == ["BODY", "SpinalCord"]


def test_dose_reference_grid(manifest):
    f = load_fraction(manifest, "P001", 1, reference="dose")
    assert f.reference.GetSize() == (11, 11, 6) and f.reference.GetSpacing() == pytest.approx((3.0, 3.0, 4.0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(f.dose), np.float32(2.0))
    assert same_grid(f.ct, f.reference, tol=0) and same_grid(f.masks["Heart"], f.reference, tol=0)


def test_missing_dose_names_patient_and_fraction(manifest):
    from COMPASSLib.cohort import Cohort

    cohort = Cohort.load(manifest)
    cohort.patient("P001").fraction(2).dose = []
    with pytest.raises(InputError, match="no dose") as err:
        load_fraction(cohort, "P001", 2)
    assert "patient P001" in str(err.value) and "fraction 2" in str(err.value)


def test_broken_file_error_names_patient_fraction_and_file(manifest, tmp_path):
    from COMPASSLib.cohort import Cohort

    cohort = Cohort.load(manifest)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 10)
    cohort.patient("P001").fraction(1).pet = [str(junk)]
    with pytest.raises(InputError) as err:
        load_fraction(cohort, "P001", 1)
    message = str(err.value)
    assert "patient P001" in message and "fraction 1" in message and "junk.dcm" in message


def test_patient_reference(manifest):
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.io import read_volume

    grid = load_patient_reference(manifest, "P001")
    cohort = Cohort.load(manifest)
    ct = read_volume(cohort.paths(cohort.patient("P001").planning.ct), "ct")
    assert same_grid(grid, ct, tol=0) and grid.GetPixelID() == sitk.sitkUInt8
    assert grid.GetMetaData("FrameOfReferenceUID") == ct.GetMetaData("FrameOfReferenceUID")
    dose_grid = load_patient_reference(manifest, "P001", reference="dose", fraction_index=2)
    assert dose_grid.GetSize() == (11, 11, 6)


def test_real_patient_without_dose(shared_data, tmp_path):
    """STS_002 (real CT + PET + MR, no RTDOSE) scanned as a cohort: the planning CT defines the grid,
    the PET is a fraction image, and asking for a fraction's images without dose is a clear error."""
    from COMPASSLib.scan import scan

    cohort = scan(shared_data / "ibsi" / "sts" / "STS_002", manifest_path=tmp_path / "cohort.json")
    patient = cohort.patient("STS_002")
    assert len(patient.planning.ct) == 48 and patient.planning.rtstruct[0].endswith("CT/mask/RS.dcm")
    assert len(patient.fraction(1).pet) == 48 and "GTV_Mass_CT" in patient.organs   # null: for the user to map
    grid = load_patient_reference(cohort, "STS_002")
    assert grid.GetSize() == (161, 143, 48)
    with pytest.raises(InputError, match="no dose") as err:
        load_fraction(cohort, "STS_002", 1)
    assert "patient STS_002" in str(err.value) and "fraction 1" in str(err.value)


# ---------------------------------------------------------------------------------------- PatientLoader
def _arrays(images):
    out = {"reference": images.reference, "ct": images.ct, "pet": images.pet, "dose": images.dose,
           **{f"mask_{k}": v for k, v in images.masks.items()}}
    return {k: (None if v is None else (sitk.GetArrayFromImage(v), v.GetOrigin(), v.GetSpacing(), v.GetDirection()))
            for k, v in out.items()}


def _assert_same_images(a, b):
    a, b = _arrays(a), _arrays(b)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] is None) == (b[k] is None), k
        if a[k] is not None:
            np.testing.assert_array_equal(a[k][0], b[k][0], err_msg=k)
            assert a[k][1:] == b[k][1:], k


def test_loader_reads_shared_files_once_and_equals_load_fraction(manifest, monkeypatch):
    """One loader per patient: the reference grid and the planning RTSTRUCT (used by fraction 2, and here
    by fraction 1 too) are read once, and every image is voxel-for-voxel what load_fraction gives."""
    import COMPASSLib.io as io
    from COMPASSLib import ingest
    from COMPASSLib.cohort import Cohort

    cohort = Cohort.load(manifest)
    cohort.patient("P001").fraction(1).rtstruct = []   # both fractions now use the planning structures
    fresh = {k: load_fraction(cohort, "P001", k) for k in (1, 2)}

    calls = {"grid": 0, "structures": 0}

    def counted(name, fn):
        def wrapper(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapper

    monkeypatch.setattr(ingest, "load_patient_reference", counted("grid", ingest.load_patient_reference))
    monkeypatch.setattr(io, "read_structures", counted("structures", io.read_structures))
    loader = ingest.PatientLoader(cohort, "P001")
    loaded = {k: loader.load(k) for k in (1, 2)}
    assert calls == {"grid": 1, "structures": 1}
    for k in (1, 2):
        _assert_same_images(loaded[k], fresh[k])
    assert sorted(loaded[1].masks) == ["Heart", "SpinalCord"]
    # each fraction gets its own mask objects: editing one leaves the other fraction's (and the cache) alone
    loaded[1].masks["Heart"][0, 0, 0] = 7
    assert loader.load(2).masks["Heart"][0, 0, 0] == 0 and loaded[2].masks["Heart"][0, 0, 0] == 0


def test_loader_skips_modalities_and_organs(manifest, monkeypatch):
    from COMPASSLib import ingest

    read = []
    real = ingest._read_volume
    monkeypatch.setattr(ingest, "_read_volume", lambda c, files, modality, *a: read.append(modality) or real(
        c, files, modality, *a))
    full = load_fraction(manifest, "P001", 2)
    read.clear()
    f = ingest.PatientLoader(manifest, "P001", modalities=("dose", "rtstruct"), organs=["SpinalCord"]).load(2)
    assert read == ["dose"]                                     # no CT read at all
    assert f.ct is None and f.pet is None and list(f.masks) == ["SpinalCord"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(f.dose), sitk.GetArrayFromImage(full.dose))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(f.masks["SpinalCord"]),
                                  sitk.GetArrayFromImage(full.masks["SpinalCord"]))
    # load_fraction takes the same keywords, and a reference grid the caller already holds
    grid = load_patient_reference(manifest, "P001")
    read.clear()
    g = load_fraction(manifest, "P001", 1, reference_image=grid, modalities=["ct"])
    assert read == ["ct"] and g.dose is None and g.masks == {} and g.reference is grid
    assert same_grid(g.ct, grid, tol=0)
    with pytest.raises(InputError, match="unknown modalities.*mri"):
        ingest.PatientLoader(manifest, "P001", modalities=("ct", "mri"))


@pytest.mark.parametrize("bits, stored, signed, syntax", [
    (16, 16, 1, "1.2.840.10008.1.2.1"), (16, 16, 0, "1.2.840.10008.1.2"), (8, 8, 0, "1.2.840.10008.1.2.1"),
    (32, 32, 1, "1.2.840.10008.1.2.1"), (16, 12, 1, "1.2.840.10008.1.2.1"), (16, 16, 1, "1.2.840.10008.1.2.2")])
def test_native_pixels_equal_pydicom_or_defer_to_it(tmp_path, bits, stored, signed, syntax):
    """The fast path of series reading returns pydicom's own pixel_array values, and hands anything it
    does not cover exactly (12 of 16 bits stored: sign extension; big endian) back to pydicom."""
    import pydicom
    from pydicom.dataset import FileMetaDataset

    from COMPASSLib.io.dicom_series import native_pixels

    rng = np.random.default_rng(bits + stored + signed)
    lo, hi = (-(2 ** (stored - 1)), 2 ** (stored - 1)) if signed else (0, 2 ** stored)
    values = rng.integers(lo, hi, size=(3, 5)).astype(f"{'i' if signed else 'u'}{bits // 8}")
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "CT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, 5, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, stored, stored - 1, signed
    ds.PixelData = values.astype(values.dtype.newbyteorder(">" if syntax.endswith("2.2") else "<")).tobytes()
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    fast = native_pixels(ds)
    if stored != bits or syntax.endswith("2.2"):
        assert fast is None
    else:
        assert fast.dtype == ds.pixel_array.dtype
        np.testing.assert_array_equal(fast, ds.pixel_array)
        np.testing.assert_array_equal(fast, values)
