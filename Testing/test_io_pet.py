"""PET -> SUVbw against hand-computed values, and PET files that cannot be converted."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib.errors import InputError
from COMPASSLib.io.pet import read_pet_series
from helpers_dicom import SUV_HAND, pet_info, write_series

# SUV_HAND (1.48038): 5000 Bq/ml at 09:00 with pet_info's defaults; hand computation in helpers_dicom.py.


def _pet(tmp_path, value=2500, slope=2.0, when=dt.datetime(2026, 1, 5, 9, 0, 0), extra=None, **info):
    stored = np.full((4, 5, 5), value, np.int16)

    def tags(ds, z):
        pet_info(ds, **info)
        if extra:
            extra(ds, z)
    return write_series(tmp_path, stored, modality="PT", spacing=(4.0, 4.0, 4.0), slope=slope,
                        when=when, extra=tags)


def test_suv_bqml_start_decay(tmp_path):
    image = read_pet_series(_pet(tmp_path))      # 2500 stored x slope 2 = 5000 Bq/ml
    values = sitk.GetArrayFromImage(image)
    assert image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(values, SUV_HAND, rtol=2e-5)
    assert image.GetMetaData("Units") == "SUVbw"


def test_suv_uses_earliest_acquisition_when_series_time_is_later(tmp_path):
    """QIBA: a series re-created after the scan (SeriesTime after the acquisition) decays to the
    earliest AcquisitionTime. Series time 09:30, acquisitions from 09:00 -> same SUV as above."""
    def acquisition(ds, z):
        ds.SeriesTime = "093000"
        ds.AcquisitionTime = f"0900{z:02d}"
    image = read_pet_series(_pet(tmp_path, extra=acquisition))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), SUV_HAND, rtol=2e-5)


def test_suv_later_scan_hand_value(tmp_path):
    # series at 09:30:00 -> dt = 5400 s: 5000 x 75000 / (370e6 x 2^(-5400/6586.2)) = 1.78913
    image = read_pet_series(_pet(tmp_path, when=dt.datetime(2026, 1, 5, 9, 30, 0)))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), 1.78913, rtol=2e-5)


def test_suv_admin_decay_correction(tmp_path):
    # already decay corrected to injection: SUV = 5000 x 75000 / 370e6 = 1.013514
    image = read_pet_series(_pet(tmp_path, decay="ADMIN"))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), 1.013514, rtol=2e-6)


def test_gml_is_already_suv(tmp_path):
    image = read_pet_series(_pet(tmp_path, value=150, slope=0.01, units="GML"))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), 1.5, rtol=1e-6)


def _drop(*keywords, sequence=False):
    def edit(ds, z):
        target = ds.RadiopharmaceuticalInformationSequence[0] if sequence else ds
        for k in keywords:
            delattr(target, k)
    return edit


@pytest.mark.parametrize("edit, tag", [
    (_drop("PatientWeight"), "PatientWeight"),
    (_drop("DecayCorrection"), "DecayCorrection"),
    (_drop("Units"), "Units"),
    (_drop("RadiopharmaceuticalInformationSequence"), "RadiopharmaceuticalInformationSequence"),
    (_drop("RadionuclideTotalDose", sequence=True), "RadionuclideTotalDose"),
    (_drop("RadionuclideHalfLife", sequence=True), "RadionuclideHalfLife"),
    (_drop("RadiopharmaceuticalStartTime", sequence=True), "RadiopharmaceuticalStartTime"),
])
def test_missing_suv_tag_names_tag_and_file(tmp_path, edit, tag):
    files = _pet(tmp_path, extra=edit)
    with pytest.raises(InputError, match=f"missing tag {tag}") as err:
        read_pet_series(files, patient="P1", fraction=3)
    message = str(err.value)
    assert "IM000" in message and "patient P1" in message and "fraction 3" in message


@pytest.mark.parametrize("info, fault", [({"units": "CNTS"}, "Units CNTS is not supported"),
                                         ({"decay": "NONE"}, "DecayCorrection NONE is not supported"),
                                         ({"injection": "100000"}, "precedes injection")])
def test_unconvertible_pet_refused(tmp_path, info, fault):
    with pytest.raises(InputError, match=fault):
        read_pet_series(_pet(tmp_path, **info))
