"""PET series -> float32 image in SUV body-weight (SUVbw, g/ml).

Conversion follows the QIBA "vendor-neutral pseudo-code for SUV calculation" (QIBA FDG-PET/CT
profile, SUV calculation wiki):
- Units GML: the values already are SUVbw; used as they are.
- Units BQML: SUVbw = activity concentration (Bq/ml) x PatientWeight (g) / decayed injected dose (Bq)
  where the decayed dose = RadionuclideTotalDose x 2^(-dt / RadionuclideHalfLife):
    * DecayCorrection START: the scanner corrected each slice to the series start, so dt = scan
      reference time - injection time. The reference time is SeriesDate/SeriesTime unless that is
      later than the earliest AcquisitionDate/AcquisitionTime (series re-created after the scan), in
      which case the earliest acquisition time is used (QIBA's rule).
    * DecayCorrection ADMIN: the scanner already corrected to the administration time; dt = 0.
    * anything else (NONE: per-slice decay would be needed) is refused.
  The injection time is RadiopharmaceuticalStartDateTime, else SeriesDate + RadiopharmaceuticalStartTime.
- Any other Units (CNTS, PROPCPS, ...) or a missing tag is an InputError naming the file and the tag:
  COMPASS never hands raw counts on as if they were SUV.
"""
from __future__ import annotations

from COMPASSLib.errors import InputError
from COMPASSLib.io.dicom_series import dicom_datetime, dicom_datetime_dt, read_series


def read_pet_series(files, patient=None, fraction=None):
    """Read a PET DICOM series -> `SimpleITK.Image` float32 SUVbw with LPS geometry."""
    image, datasets = read_series(files, "PT", patient=patient, fraction=fraction)
    factor = suv_factor(datasets, patient=patient, fraction=fraction)
    if factor != 1.0:
        import SimpleITK as sitk

        scaled = sitk.Cast(image * factor, sitk.sitkFloat32)
        for key in image.GetMetaDataKeys():
            scaled.SetMetaData(key, image.GetMetaData(key))
        image = scaled
    image.SetMetaData("Units", "SUVbw")
    image.SetMetaData("SUVbwFactor", repr(float(factor)))
    return image


def suv_factor(datasets, patient=None, fraction=None) -> float:
    """The factor that turns the rescaled pixel values of these (sorted) slices into SUVbw."""
    first = datasets[0]
    path = getattr(first, "filename", None)

    def fail(what):
        return InputError(f"PET cannot be converted to SUV: {what}", file=path, patient=patient, fraction=fraction)

    units = {str(ds.get("Units", "")).strip().upper() for ds in datasets}
    if len(units) > 1:
        raise fail(f"slices disagree on Units {sorted(units)}")
    units = units.pop()
    if not units:
        raise fail("missing tag Units (0054,1001)")
    if units == "GML":
        return 1.0
    if units != "BQML":
        raise fail(f"Units {units} is not supported (only BQML with decay information, or GML)")

    weight = first.get("PatientWeight")
    if weight in (None, "") or float(weight) <= 0:
        raise fail("missing tag PatientWeight (0010,1030) (needed for SUV body-weight)")
    decay = str(first.get("DecayCorrection", "")).strip().upper()
    if not decay:
        raise fail("missing tag DecayCorrection (0054,1102)")
    seq = first.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        raise fail("missing tag RadiopharmaceuticalInformationSequence (0054,0016)")
    info = seq[0]
    dose = info.get("RadionuclideTotalDose")
    if dose in (None, "") or float(dose) <= 0:
        raise fail("missing tag RadionuclideTotalDose (0018,1074)")
    dose = float(dose)

    if decay == "ADMIN":
        dt_s = 0.0
    elif decay == "START":
        half_life = info.get("RadionuclideHalfLife")
        if half_life in (None, "") or float(half_life) <= 0:
            raise fail("missing tag RadionuclideHalfLife (0018,1075)")
        injection = dicom_datetime_dt(info.get("RadiopharmaceuticalStartDateTime")) or dicom_datetime(
            first.get("SeriesDate"), info.get("RadiopharmaceuticalStartTime"))
        if injection is None:
            raise fail("missing tag RadiopharmaceuticalStartTime (0018,1072) / "
                       "RadiopharmaceuticalStartDateTime (0018,1078)")
        series_time = dicom_datetime(first.get("SeriesDate"), first.get("SeriesTime"))
        acquisitions = [t for t in (dicom_datetime(ds.get("AcquisitionDate") or first.get("SeriesDate"),
                                                   ds.get("AcquisitionTime")) for ds in datasets) if t]
        earliest = min(acquisitions) if acquisitions else None
        if series_time is None and earliest is None:
            raise fail("missing tag SeriesTime (0008,0031) / AcquisitionTime (0008,0032)")
        reference = series_time if (earliest is None or (series_time and series_time <= earliest)) else earliest
        dt_s = (reference - injection).total_seconds()
        if dt_s < 0:
            raise fail(f"scan time {reference.isoformat()} precedes injection time {injection.isoformat()}")
        dose = dose * 2.0 ** (-dt_s / float(half_life))
    else:
        raise fail(f"DecayCorrection {decay} is not supported (START or ADMIN)")

    return float(weight) * 1000.0 / dose

