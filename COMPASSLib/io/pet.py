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
- Plausibility (DecayCorrection START, where the uptake time dt enters the factor 2^(dt / half-life)):
  dt must lie in the accepted uptake-time range, Resources/pet_suv.yaml (default 30-180 min, the
  sources are quoted there; `uptake_range_min=(low, high)` overrides it per call). A scan before the
  injection, an uptake time outside the range (12 h: a wrong time tag would make every SUV ~90x too
  high), an uptake time longer than MAX_HALF_LIVES half-lives of the radionuclide (a decay correction
  beyond 2^10, e.g. a half-life tag in the wrong unit) or a factor that is not a finite positive number
  are an InputError naming the file, patient, fraction, the uptake time found and the accepted range.
  With GML (already SUV) and ADMIN (decay corrected to the injection) the uptake time does not
  enter the conversion and is not checked.
"""
from __future__ import annotations

import functools
import math

from COMPASSLib.errors import InputError
from COMPASSLib.io.dicom_series import (_conversion_errors, dicom_datetime, dicom_datetime_dt, dicom_number,
                                        read_series, sequence_items, tag_name)

SETTINGS_FILE = "pet_suv.yaml"
MAX_HALF_LIVES = 10.0   # a decay correction above 2^10: >99.9 % of the activity gone, no quantitative PET


@functools.lru_cache(maxsize=None)
def plausible_range(key) -> tuple:
    """(low, high) of an entry of Resources/pet_suv.yaml (uptake_time_min, patient_weight_kg,
    injected_activity_mbq)."""
    from COMPASSLib.resources import load_yaml, resource_path

    entry = load_yaml(SETTINGS_FILE).get(key) or {}
    return _checked_range((entry.get("low"), entry.get("high")), resource_path(SETTINGS_FILE), key)


def default_uptake_range_min() -> tuple:
    """(low, high) accepted uptake time in minutes from Resources/pet_suv.yaml."""
    return plausible_range("uptake_time_min")


def _checked_range(value, source=None, key="uptake_time_min") -> tuple:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"PET {key} must be two numbers (low, high), got {value!r}", file=source) from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        raise InputError(f"PET {key} must satisfy 0 <= low < high, got {low:g}-{high:g}", file=source)
    return low, high


def read_pet_series(files, patient=None, fraction=None, uptake_range_min=None):
    """Read a PET DICOM series -> `SimpleITK.Image` float32 SUVbw with LPS geometry.
    `uptake_range_min`: (low, high) accepted uptake time in minutes (default Resources/pet_suv.yaml)."""
    image, datasets = read_series(files, "PT", patient=patient, fraction=fraction)
    factor = suv_factor(datasets, patient=patient, fraction=fraction, uptake_range_min=uptake_range_min)
    if factor != 1.0:
        import numpy as np
        import SimpleITK as sitk

        scaled = sitk.Cast(image * factor, sitk.sitkFloat32)
        for key in image.GetMetaDataKeys():
            scaled.SetMetaData(key, image.GetMetaData(key))
        image = scaled
        if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
            raise InputError(f"PET cannot be converted to SUV: SUV factor {factor:g} makes values that are not "
                             "finite in float32", file=getattr(datasets[0], "filename", None), patient=patient,
                             fraction=fraction)
    image.SetMetaData("Units", "SUVbw")
    image.SetMetaData("SUVbwFactor", repr(float(factor)))
    return image


def suv_factor(datasets, patient=None, fraction=None, uptake_range_min=None) -> float:
    """The factor that turns the rescaled pixel values of these (sorted) slices into SUVbw."""
    first = datasets[0]
    path = getattr(first, "filename", None)

    def fail(what):
        return InputError(f"PET cannot be converted to SUV: {what}", file=path, patient=patient, fraction=fraction)

    units = {_text(ds, "Units", fail) for ds in datasets}
    if len(units) > 1:
        raise fail(f"slices disagree on Units {sorted(units)}")
    units = units.pop()
    if not units:
        raise fail("missing tag Units (0054,1001)")
    if units == "GML":
        return 1.0
    if units != "BQML":
        raise fail(f"Units {units} is not supported (only BQML with decay information, or GML)")

    weight = _positive(first, "PatientWeight", fail, " (needed for SUV body-weight)")
    _check_plausible(weight, "patient_weight_kg", "PatientWeight (0010,1030)", "kg", fail)
    decay = _text(first, "DecayCorrection", fail)
    if not decay:
        raise fail("missing tag DecayCorrection (0054,1102)")
    info = _radiopharmaceutical(first, fail)
    dose = _positive(info, "RadionuclideTotalDose", fail)
    _check_plausible(dose / 1e6, "injected_activity_mbq", "RadionuclideTotalDose (0018,1074)", "MBq", fail,
                     scale=1e6, unit_stored="Bq")
    if decay == "ADMIN":
        pass
    elif decay == "START":
        dose = dose * _decay(datasets, info, fail, uptake_range_min)
    else:
        raise fail(f"DecayCorrection {decay} is not supported (START or ADMIN)")

    factor = weight * 1000.0 / dose
    if not (math.isfinite(factor) and factor > 0.0):
        raise fail(f"SUV factor {factor!r} is not a finite positive number (PatientWeight {weight:g}, "
                   f"RadionuclideTotalDose {info.get('RadionuclideTotalDose')}, decayed {dose!r} Bq)")
    return factor


def _text(ds, keyword, fail) -> str:
    """An upper-case code string (Units, DecayCorrection); '' when absent."""
    try:
        value = ds.get(keyword, "")
    except _conversion_errors() as e:
        raise fail(f"unreadable {tag_name(keyword)}: {e}") from None
    return str(value if value is not None else "").strip().upper()


def _positive(ds, keyword, fail, why="") -> float:
    """A finite number > 0 of `keyword` ('missing tag' when absent, empty or not positive)."""
    try:
        value = dicom_number(ds, keyword, default=math.nan)
    except InputError as e:
        raise fail(e.message) from None
    if not value > 0:   # NaN: absent
        raise fail(f"missing tag {tag_name(keyword)}{why}" if math.isnan(value) else
                   f"{tag_name(keyword)} {value:g} must be positive{why}")
    return value


def _check_plausible(value, key, tag, unit, fail, scale=1.0, unit_stored=None) -> None:
    """`value` (in `unit`) within Resources/pet_suv.yaml's `key` range (a tag in the wrong unit: weight in g,
    activity in MBq, would make every SUV 1000x or 1e6x off)."""
    low, high = plausible_range(key)
    if not low <= value <= high:
        stored = f" ({value * scale:g} {unit_stored})" if unit_stored else ""
        raise fail(f"{tag} {value:g} {unit}{stored} is outside the plausible {low:g}-{high:g} {unit} "
                   f"(Resources/{SETTINGS_FILE} {key}); is it in another unit?")


def _radiopharmaceutical(first, fail):
    """The first item of RadiopharmaceuticalInformationSequence (a dataset)."""
    try:
        items = sequence_items(first, "RadiopharmaceuticalInformationSequence")
    except InputError as e:
        raise fail(e.message) from None
    if not items:
        raise fail("missing tag RadiopharmaceuticalInformationSequence (0054,0016)")
    return items[0]


def _decay(datasets, info, fail, uptake_range_min) -> float:
    """2^(-uptake / half-life) for DecayCorrection START, the uptake time checked (module doc)."""
    first = datasets[0]
    half_life = _positive(info, "RadionuclideHalfLife", fail)
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
    if uptake_range_min is None:
        (low, high), source = default_uptake_range_min(), f"Resources/{SETTINGS_FILE}"
    else:
        (low, high), source = _checked_range(uptake_range_min), "uptake_range_min"
    found = (f"uptake time {dt_s / 60.0:.1f} min (scan {reference.isoformat()}, injection "
             f"{injection.isoformat()}); accepted {low:g}-{high:g} min ({source})")
    if dt_s < 0:
        raise fail(f"scan time {reference.isoformat()} precedes injection time {injection.isoformat()}: {found}")
    if not low <= dt_s / 60.0 <= high:
        raise fail(f"{found}; check the injection date/time tags (0018,1078)/(0018,1072)")
    half_lives = dt_s / half_life
    if not half_lives <= MAX_HALF_LIVES:
        raise fail(f"decay correction 2^({dt_s:.0f} s / {half_life:g} s) = 2^{half_lives:.3g} is beyond "
                   f"2^{MAX_HALF_LIVES:g} (the uptake is {half_lives:.3g} half-lives): {found}; check "
                   "RadionuclideHalfLife (0018,1075), in seconds")
    return 2.0 ** (-half_lives)
