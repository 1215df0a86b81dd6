"""Corpus cases of the DICOM readers: CT and PET series (io.ct, io.pet, io.dicom_series), RTDOSE (io.rtdose) and
RTSTRUCT (io.rtstruct), each a pydicom mutation of a copy of the synthetic cohort's patient 1, fraction 1
files, read in-process with the patient and fraction named (`io.read_volume`, `io.read_grid`,
`io.read_structures`). A refusal must name the file, the patient and the fraction."""
from __future__ import annotations

import datetime as dt

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from COMPASSLib.errors import DoseError, GeometryError
from corpus.build import SAME, Call, Case, refused, same_image, same_masks

CT, PET, DOSE, RS = "CT (io.ct)", "PET (io.pet)", "RTDOSE (io.rtdose)", "RTSTRUCT (io.rtstruct)"


# --- small edit functions fn(ds, i) ---------------------------------------------------------------------
def put(**values):
    def fn(ds, i):
        for k, v in values.items():
            setattr(ds, k, v)
    return fn


def drop(*keywords, sequence=None):
    def fn(ds, i):
        holder = ds[sequence].value[0] if sequence else ds
        for k in keywords:
            if k in holder:
                delattr(holder, k)
    return fn


def raw(keyword, value: bytes, sequence=None):
    """The element's bytes replaced as they would be read from a file (e.g. text in a numeric VR)."""
    def fn(ds, i):
        holder = ds[sequence].value[0] if sequence else ds
        tag = Tag(keyword)
        vr = holder[tag].VR if tag in holder else None
        holder._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    return fn


def both(*fns):
    def fn(ds, i):
        for f in fns:
            f(ds, i)
    return fn


def shift_position(dz=0.0, dx=0.0):
    def fn(ds, i):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x + dx:.6f}", f"{y:.6f}", f"{z + dz:.6f}"]
    return fn


def _where(ws):
    return dict(patient=ws.pid, fraction=1)


# --- CT -------------------------------------------------------------------------------------------------
def _read(kind, files, ws):
    from COMPASSLib import io as cio

    return cio.read_volume(files, kind, **_where(ws))


def ct(name, edit, expect, which=None, note=""):
    def build(ws, d):
        files = ws.edit(ws.ct, d / "in", edit, which)
        return Call("reader", lambda: _read("ct", files, ws), check=lambda img: same_image(img, ws.clean_read("ct")))
    return Case(name, CT, build, expect, note)


def ct_files(name, change, expect, note="", check=None):
    """A case that changes the list of files (change(ws, files, folder) -> files)."""
    def build(ws, d):
        files = change(ws, ws.copy(ws.ct, d / "in"), d / "in")
        verify = check(ws) if check else (lambda img: same_image(img, ws.clean_read("ct")))
        return Call("reader", lambda: _read("ct", files, ws), check=verify)
    return Case(name, CT, build, expect, note)


def _drop_file(k):
    def change(ws, files, folder):
        files[k].unlink()
        return files[:k] + files[k + 1:]
    return change


def _duplicate_file(ws, files, folder):
    import pydicom

    ds = pydicom.dcmread(files[10])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(folder / "copy.dcm")
    return files + [folder / "copy.dcm"]


def _text_file(ws, files, folder):
    (folder / "notes.dcm").write_text("this is not DICOM\n")
    return files + [folder / "notes.dcm"]


def _empty_file(ws, files, folder):
    (folder / "empty.dcm").write_bytes(b"")
    return files + [folder / "empty.dcm"]


def _cut_file(ws, files, folder):
    data = files[5].read_bytes()
    files[5].write_bytes(data[: len(data) // 3])
    return files


def _reversed(ws, files, folder):
    return list(reversed(files))


def _single_slice(ws, files, folder):
    return files[:1]


def _check_single_slice(ws):
    def check(img):
        import pydicom

        clean = ws.clean_read("ct")
        z = float(pydicom.dcmread(ws.ct[0], stop_before_pixels=True).ImagePositionPatient[2])
        k = int(round((z - clean["origin"][2]) / clean["spacing"][2]))
        got = img
        from corpus.build import image_values

        v = image_values(got)
        np.testing.assert_allclose(v["array"][0], clean["array"][k], atol=1e-6)
        assert abs(v["spacing"][2] - clean["spacing"][2]) < 1e-6, "slice thickness not used as spacing"
    return check


def _pet_files_as_ct(ws, files, folder):
    return ws.copy(ws.pet, folder / "pet")


def _wrong_rows(ds, i):
    ds.Rows, ds.Columns = int(ds.Rows) - 2, int(ds.Columns)
    ds.PixelData = ds.PixelData[: int(ds.Rows) * int(ds.Columns) * 2]


def _huge_header(ds, i):
    ds.Rows = ds.Columns = 65535


def ct_cases():
    return [
        ct_files("ct_missing_middle_slice", _drop_file(15), refused("missing slice", error=GeometryError)),
        ct_files("ct_duplicate_slice", _duplicate_file, refused("same position", error=GeometryError)),
        ct("ct_uneven_spacing", shift_position(dz=2.5), refused("uneven slice spacing", error=GeometryError), which=7),
        ct("ct_one_slice_mr", put(Modality="MR"), refused("wrong modality", "MR"), which=3),
        ct_files("ct_pet_files_as_ct", _pet_files_as_ct, refused("wrong modality", "PT")),
        ct("ct_no_pixel_spacing", drop("PixelSpacing"), refused("PixelSpacing")),
        ct("ct_no_orientation", drop("ImageOrientationPatient"), refused("ImageOrientationPatient")),
        ct("ct_no_position", drop("ImagePositionPatient"), refused("ImagePositionPatient"), which=4),
        ct("ct_orientation_differs", put(ImageOrientationPatient=[1, 0, 0, 0, 0.99, 0.141]),
           refused("orientation", error=GeometryError), which=9),
        ct("ct_pixel_spacing_differs", put(PixelSpacing=[6.5, 6.5]), refused("pixel spacing", error=GeometryError),
           which=9),
        ct("ct_rows_differ", _wrong_rows, refused("slice size", error=GeometryError), which=2),
        ct("ct_two_series", put(SeriesInstanceUID=generate_uid()), refused("SeriesInstanceUID"), which=6),
        ct("ct_two_frames_of_reference", put(FrameOfReferenceUID=generate_uid()),
           refused("FrameOfReferenceUID", error=GeometryError), which=6),
        ct("ct_truncated_pixel_data", lambda ds, i: setattr(ds, "PixelData", ds.PixelData[:100]),
           refused("pixel data"), which=8),
        ct("ct_no_pixel_data", drop("PixelData"), refused("without pixel data"), which=8),
        ct_files("ct_text_file_in_series", _text_file, refused("cannot read DICOM")),
        ct_files("ct_empty_file_in_series", _empty_file, refused("cannot read DICOM")),
        ct_files("ct_truncated_file", _cut_file, refused("pixel data")),
        ct_files("ct_files_in_reverse_order", _reversed, SAME),
        ct("ct_rescale_slope_text", raw("RescaleSlope", b"abc "), refused("RescaleSlope")),
        ct("ct_rescale_slope_zero", put(RescaleSlope="0"), refused("RescaleSlope")),
        ct("ct_rescale_intercept_missing", drop("RescaleIntercept"), refused("RescaleIntercept"),
           note="was read as intercept 0: every HU 1024 too high"),
        ct("ct_rescale_slope_missing", drop("RescaleSlope"), refused("RescaleSlope")),
        ct("ct_rescale_overflow", put(RescaleSlope="1e300"), refused("not finite")),
        ct("ct_position_nan", raw("ImagePositionPatient", b"nan\\0\\0 "), refused("ImagePositionPatient"), which=5),
        ct("ct_negative_pixel_spacing", put(PixelSpacing=[-6, -6]), refused("PixelSpacing", error=GeometryError)),
        ct("ct_zero_rows", put(Rows=0), refused("Rows")),
        ct("ct_rows_as_text", raw("Rows", b"\x01\x02\x03"), refused("Rows"), which=0),
        ct("ct_multi_frame_slice", put(NumberOfFrames=2), refused("multi-frame"), which=1),
        ct("ct_slice_shifted_in_plane", shift_position(dx=4.0), refused("shifted in-plane", error=GeometryError),
           which=12),
        ct("ct_orientation_not_orthonormal", put(ImageOrientationPatient=[1, 0, 0, 1, 0, 0]),
           refused("ImageOrientationPatient", error=GeometryError)),
        ct("ct_bits_allocated_8", put(BitsAllocated=8, BitsStored=8, HighBit=7), refused("pixel data"), which=3,
           note="half of the slice's bytes were read as 8-bit values"),
        ct("ct_patient_name_changed", put(PatientName="Someone^Else"), SAME),
        ct_files("ct_single_slice", _single_slice, SAME, check=_check_single_slice),
        Case("ct_huge_rows_header_grid", CT, _grid_case(_huge_header), refused("memory", "Rows (0028,0010)",
                                                                               "COMPASS_MEMORY_LIMIT")),
    ]


def _grid_case(edit):
    """The headers-only reference grid (io.read_grid) of an edited series, under a fixed 8 GiB limit."""
    def build(ws, d):
        from COMPASSLib import io as cio
        from COMPASSLib.memory import limit_set

        files = ws.edit(ws.ct, d / "in", edit)

        def read():
            with limit_set("8G"):
                return cio.read_grid(files, "ct", **_where(ws))
        return Call("reader", read)
    return build


# --- PET ------------------------------------------------------------------------------------------------
def pet(name, edit, expect, which=None, check=None, note=""):
    def build(ws, d):
        files = ws.edit(ws.pet, d / "in", edit, which)
        verify = check(ws, files) if check else (lambda img: same_image(img, ws.clean_read("pet")))
        return Call("reader", lambda: _read("pet", files, ws), check=verify)
    return Case(name, PET, build, expect, note)


def _injection_before(minutes):
    def fn(ds, i):
        scan = dt.datetime.strptime(ds.SeriesDate + str(ds.SeriesTime)[:6], "%Y%m%d%H%M%S")
        inj = scan - dt.timedelta(minutes=minutes)
        info = ds.RadiopharmaceuticalInformationSequence[0]
        info.RadiopharmaceuticalStartDateTime = inj.strftime("%Y%m%d%H%M%S")
        info.RadiopharmaceuticalStartTime = inj.strftime("%H%M%S")
    return fn


def _info(**values):
    def fn(ds, i):
        for k, v in values.items():
            setattr(ds.RadiopharmaceuticalInformationSequence[0], k, v)
    return fn


def _scale_info(keyword, factor):
    def fn(ds, i):
        info = ds.RadiopharmaceuticalInformationSequence[0]
        setattr(info, keyword, f"{float(getattr(info, keyword)) * factor:.6g}")
    return fn


def _admin_check(ws, files):
    """DecayCorrection ADMIN: the injected activity is not decayed, so SUV = clean x 2^(-uptake / T1/2)."""
    def check(img):
        import pydicom

        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        info = ds.RadiopharmaceuticalInformationSequence[0]
        scan = dt.datetime.strptime(ds.SeriesDate + str(ds.SeriesTime)[:6], "%Y%m%d%H%M%S")
        inj = dt.datetime.strptime(str(info.RadiopharmaceuticalStartDateTime)[:14], "%Y%m%d%H%M%S")
        ratio = 2.0 ** (-(scan - inj).total_seconds() / float(info.RadionuclideHalfLife))
        same_image(img, ws.clean_read("pet"), scale=ratio, rtol=1e-5)
    return check


def _series_recreated(ds, i):
    """SeriesTime 2 h after the acquisition (a series re-created later): QIBA takes the acquisition time."""
    when = dt.datetime.strptime(ds.SeriesDate + str(ds.SeriesTime)[:6], "%Y%m%d%H%M%S")
    ds.AcquisitionDate = ds.SeriesDate
    ds.AcquisitionTime = when.strftime("%H%M%S")
    ds.SeriesTime = (when + dt.timedelta(hours=2)).strftime("%H%M%S")


def _pet_drop_slice(ws, d):
    files = ws.copy(ws.pet, d / "in")
    files[12].unlink()
    files = files[:12] + files[13:]
    return Call("reader", lambda: _read("pet", files, ws))


def _pet_with_ct_slice(ws, d):
    files = ws.copy(ws.pet, d / "in") + ws.copy(ws.ct[:1], d / "in" / "ct")
    return Call("reader", lambda: _read("pet", files, ws))


def pet_cases():
    return [
        pet("pet_injection_12h_before_scan", _injection_before(12 * 60), refused("uptake time 720.0 min",
                                                                                 "accepted 30-180 min")),
        pet("pet_injection_3_days_before_scan", _injection_before(3 * 24 * 60), refused("uptake time 4320.0 min")),
        pet("pet_scan_before_injection", _injection_before(-30), refused("precedes injection")),
        pet("pet_half_life_in_minutes", _info(RadionuclideHalfLife="109.77"), refused("RadionuclideHalfLife")),
        pet("pet_units_cnts", put(Units="CNTS"), refused("Units CNTS")),
        pet("pet_units_missing", drop("Units"), refused("Units")),
        pet("pet_units_mixed", put(Units="GML"), refused("disagree on Units"), which=4),
        pet("pet_weight_missing", drop("PatientWeight"), refused("PatientWeight")),
        pet("pet_weight_zero", put(PatientWeight="0"), refused("PatientWeight")),
        pet("pet_weight_in_grams", lambda ds, i: setattr(ds, "PatientWeight", f"{float(ds.PatientWeight) * 1000:g}"),
            refused("PatientWeight", "plausible"), note="was converted: every SUV 1000x too high"),
        pet("pet_weight_text", raw("PatientWeight", b"heavy "), refused("PatientWeight")),
        pet("pet_activity_missing", drop("RadionuclideTotalDose", sequence="RadiopharmaceuticalInformationSequence"),
            refused("RadionuclideTotalDose")),
        pet("pet_activity_in_mbq", _scale_info("RadionuclideTotalDose", 1e-6), refused("RadionuclideTotalDose",
                                                                                        "plausible"),
            note="was converted: every SUV 1e6x too high"),
        pet("pet_activity_text", raw("RadionuclideTotalDose", b"370 MBq ",
                                     sequence="RadiopharmaceuticalInformationSequence"),
            refused("RadionuclideTotalDose")),
        pet("pet_decay_none", put(DecayCorrection="NONE"), refused("DecayCorrection NONE")),
        pet("pet_decay_missing", drop("DecayCorrection"), refused("DecayCorrection")),
        pet("pet_radiopharmaceutical_sequence_missing", drop("RadiopharmaceuticalInformationSequence"),
            refused("RadiopharmaceuticalInformationSequence")),
        pet("pet_radiopharmaceutical_sequence_empty",
            lambda ds, i: setattr(ds, "RadiopharmaceuticalInformationSequence", []),
            refused("RadiopharmaceuticalInformationSequence")),
        pet("pet_injection_time_missing", drop("RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime",
                                               sequence="RadiopharmaceuticalInformationSequence"),
            refused("RadiopharmaceuticalStartTime")),
        pet("pet_scan_time_missing", drop("SeriesTime", "AcquisitionTime"), refused("SeriesTime")),
        Case("pet_missing_slice", PET, _pet_drop_slice, refused("missing slice", error=GeometryError)),
        Case("pet_ct_slice_in_series", PET, _pet_with_ct_slice, refused("wrong modality", "CT")),
        pet("pet_decay_admin", put(DecayCorrection="ADMIN"), SAME, check=_admin_check),
        pet("pet_injection_datetime_with_utc_offset",
            lambda ds, i: setattr(ds.RadiopharmaceuticalInformationSequence[0], "RadiopharmaceuticalStartDateTime",
                                  str(ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime)
                                  + "+0100"), SAME),
        pet("pet_series_recreated_later", _series_recreated, SAME),
    ]


# --- RTDOSE ---------------------------------------------------------------------------------------------
def rd(name, edit, expect, scale=1.0, note=""):
    def build(ws, d):
        files = ws.edit([ws.dose], d / "in", edit) if edit else ws.copy([ws.dose], d / "in")
        return Call("reader", lambda: _read("dose", files, ws),
                    check=lambda img: same_image(img, ws.clean_read("dose"), scale=scale))
    return Case(name, DOSE, build, expect, note)


def _offsets(fn):
    def edit(ds, i):
        ds.GridFrameOffsetVector = [f"{v:.6f}" for v in fn([float(v) for v in ds.GridFrameOffsetVector], ds)]
    return edit


def _missing_frame(ds, i):
    n, per = int(ds.NumberOfFrames), int(ds.Rows) * int(ds.Columns) * 4
    k = n // 2
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    ds.PixelData = ds.PixelData[: k * per] + ds.PixelData[(k + 1) * per:]
    ds.GridFrameOffsetVector = [f"{v:.6f}" for v in offsets[:k] + offsets[k + 1:]]
    ds.NumberOfFrames = n - 1


def _negative_value(ds, i):
    ds.PixelRepresentation = 1
    ds.PixelData = b"\xff\xff\xff\xff" + ds.PixelData[4:]


def _dose_from_ct(ws, d):
    files = ws.copy(ws.ct[:1], d / "in")
    return Call("reader", lambda: _read("dose", files, ws))


def rd_cases():
    return [
        rd("rtdose_units_cgy", put(DoseUnits="CGY"), SAME, scale=0.01),
        rd("rtdose_units_relative", put(DoseUnits="RELATIVE"), refused("RELATIVE", error=DoseError)),
        rd("rtdose_units_missing", drop("DoseUnits"), refused("DoseUnits", error=DoseError)),
        rd("rtdose_units_mgy", put(DoseUnits="MGY"), refused("DoseUnits MGY", error=DoseError)),
        rd("rtdose_scaling_missing", drop("DoseGridScaling"), refused("DoseGridScaling", error=DoseError)),
        rd("rtdose_scaling_text", raw("DoseGridScaling", b"1e-4Gy "), refused("DoseGridScaling", error=DoseError)),
        rd("rtdose_scaling_negative", put(DoseGridScaling="-1e-4"), refused("DoseGridScaling", error=DoseError),
           note="was read: a negative dose"),
        rd("rtdose_scaling_zero", put(DoseGridScaling="0"), refused("DoseGridScaling", error=DoseError),
           note="was read: a dose of 0 Gy everywhere"),
        rd("rtdose_no_pixel_data", drop("PixelData"), refused("PixelData")),
        rd("rtdose_truncated_pixel_data", lambda ds, i: setattr(ds, "PixelData", ds.PixelData[:4000]),
           refused("pixel data")),
        rd("rtdose_offsets_one_short", _offsets(lambda o, ds: o[:-1]), refused("GridFrameOffsetVector",
                                                                               error=GeometryError)),
        rd("rtdose_offsets_missing", drop("GridFrameOffsetVector"), refused("GridFrameOffsetVector",
                                                                            error=GeometryError)),
        rd("rtdose_offsets_uneven", _offsets(lambda o, ds: o[:5] + [v + 1.5 for v in o[5:]]),
           refused("uneven dose frame spacing", error=GeometryError)),
        rd("rtdose_offsets_absolute", _offsets(lambda o, ds: [v + float(ds.ImagePositionPatient[2]) for v in o]),
           SAME),
        rd("rtdose_offsets_start_neither", _offsets(lambda o, ds: [v + 7.0 for v in o]),
           refused("neither 0", error=GeometryError)),
        rd("rtdose_missing_frame", _missing_frame, refused("missing dose frame", error=GeometryError)),
        Case("rtdose_ct_slice_as_dose", DOSE, _dose_from_ct, refused("wrong modality", "CT")),
        rd("rtdose_no_orientation", drop("ImageOrientationPatient"), refused("ImageOrientationPatient",
                                                                             error=GeometryError)),
        rd("rtdose_number_of_frames_too_many", lambda ds, i: setattr(ds, "NumberOfFrames", int(ds.NumberOfFrames) + 1),
           refused("pixel data")),
        rd("rtdose_signed_negative_dose", _negative_value, refused("negative dose", error=DoseError)),
        rd("rtdose_zero_pixel_spacing", put(PixelSpacing=[0, 0]), refused("PixelSpacing", error=GeometryError)),
        rd("rtdose_dose_comment_changed", put(DoseComment="exported again"), SAME),
    ]


# --- RTSTRUCT -------------------------------------------------------------------------------------------
def rs(name, edit, expect, rois=None, note=""):
    def build(ws, d):
        files = ws.edit([ws.rtstruct], d / "in", edit)

        def read():
            from COMPASSLib import io as cio

            return cio.read_structures(files, ws.ct_grid(), rois=rois, **_where(ws))
        return Call("reader", read, check=lambda masks: same_masks(masks, ws.clean_read("masks")))
    return Case(name, RS, build, expect, note)


def _roi_contour(ds, name="Heart"):
    """The ROIContourSequence item of the ROI called `name`."""
    number = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == name)
    return next(rc for rc in ds.ROIContourSequence if int(rc.ReferencedROINumber) == number)


def _contour(item=0):
    """fn(contour item dataset) applied to one contour item of the Heart."""
    def wrap(fn):
        def edit(ds, i):
            fn(_roi_contour(ds).ContourSequence[item])
        return edit
    return wrap


def _raw_contour_data(value: bytes):
    def fn(c):
        tag = Tag("ContourData")
        c._dict[tag] = RawDataElement(tag, "DS", len(value), value, 0, False, True)
    return fn


def _drop_one_value(c):
    c.ContourData = list(c.ContourData)[:-1]


def _tilt(c):
    data = [float(v) for v in c.ContourData]
    for k in range(2, len(data), 3):
        data[k] += 20.0 * (k // 3) / (len(data) // 3)
    c.ContourData = [f"{v:.4f}" for v in data]


def _all_open(ds, i):
    for c in _roi_contour(ds).ContourSequence:
        c.ContourGeometricType = "OPEN_PLANAR"


def _no_contours(ds, i):
    del _roi_contour(ds).ContourSequence


def _reverse(keyword):
    def fn(ds, i):
        setattr(ds, keyword, list(reversed(getattr(ds, keyword))))
    return fn


def _reverse_contours(ds, i):
    for rc in ds.ROIContourSequence:
        if "ContourSequence" in rc:
            rc.ContourSequence = list(reversed(rc.ContourSequence))


def _rs_from_dose(ws, d):
    files = ws.copy([ws.dose], d / "in")

    def read():
        from COMPASSLib import io as cio

        return cio.read_structures(files, ws.ct_grid(), **_where(ws))
    return Call("reader", read)


def _rs_text(ws, d):
    (d / "in" / "RS.dcm").write_text("ROI Heart\n")

    def read():
        from COMPASSLib import io as cio

        return cio.read_structures([d / "in" / "RS.dcm"], ws.ct_grid(), **_where(ws))
    return Call("reader", read)


def rs_cases():
    seq = "StructureSetROISequence"
    return [
        rs("rtstruct_roi_without_number", lambda ds, i: delattr(ds.StructureSetROISequence[2], "ROINumber"),
           refused("StructureSetROISequence item 3", "ROINumber")),
        rs("rtstruct_contour_without_roi_number",
           lambda ds, i: delattr(ds.ROIContourSequence[1], "ReferencedROINumber"),
           refused("ROIContourSequence item 2", "ReferencedROINumber")),
        rs("rtstruct_roi_number_text", lambda ds, i: ds[seq].value[0]._dict.__setitem__(
            Tag("ROINumber"), RawDataElement(Tag("ROINumber"), "IS", 2, b"x ", 0, False, True)),
           refused("non-integer", "ROINumber")),
        Case("rtstruct_rtdose_as_structures", RS, _rs_from_dose, refused("wrong modality", "RTDOSE")),
        rs("rtstruct_other_frame_of_reference", lambda ds, i: [
            setattr(item, "FrameOfReferenceUID", "1.2.3.4.5") for item in ds.ReferencedFrameOfReferenceSequence] and [
            setattr(r, "ReferencedFrameOfReferenceUID", "1.2.3.4.5") for r in ds.StructureSetROISequence],
           refused("FrameOfReferenceUID", error=GeometryError)),
        rs("rtstruct_contour_not_triples", _contour()(_drop_one_value), refused("ContourData", "triples"),
           note="the contour was dropped without a word: the organ shrank"),
        rs("rtstruct_contour_text", _contour()(_raw_contour_data(b"1\\2\\x3 ")), refused("ContourData", "not numbers")),
        rs("rtstruct_contour_nan", _contour()(_raw_contour_data(b"nan\\0\\0\\1\\0\\0\\1\\1\\0 ")),
           refused("ContourData", "not finite")),
        rs("rtstruct_number_of_points_disagrees", _contour()(lambda c: setattr(c, "NumberOfContourPoints", 5)),
           refused("NumberOfContourPoints")),
        rs("rtstruct_contour_not_planar", _contour()(_tilt), refused("not parallel", error=GeometryError)),
        rs("rtstruct_roi_asked_for_absent", None, refused("not in RTSTRUCT", "Nope"), rois=["Heart", "Nope"]),
        rs("rtstruct_roi_asked_for_without_contours", _no_contours, refused("Heart", "is empty"), rois=["Heart"]),
        rs("rtstruct_roi_asked_for_open_contours_only", _all_open, refused("no closed planar contours"),
           rois=["Heart"]),
        rs("rtstruct_roi_contour_sequence_text", lambda ds, i: ds._dict.__setitem__(
            Tag("ROIContourSequence"), RawDataElement(Tag("ROIContourSequence"), "LO", 4, b"none", 0, False, True)),
           refused("ROIContourSequence")),
        Case("rtstruct_text_file", RS, _rs_text, refused("cannot read DICOM")),
        rs("rtstruct_contours_in_reverse_order", _reverse_contours, SAME),
        rs("rtstruct_rois_in_reverse_order", both(_reverse("StructureSetROISequence"), _reverse("ROIContourSequence")),
           SAME),
        rs("rtstruct_label_changed", put(StructureSetLabel="re-exported"), SAME),
    ]


# --- real files of ../shared/data -------------------------------------------------------------------------
def _sts(ws, modality):
    return sorted((ws.shared / "ibsi" / "sts" / "STS_002" / modality / "image").glob("*.dcm"))


def _mirp(ws, modality):
    """MIRP's NIfTI of the STS_002 image (an independent, IBSI-validated conversion of the same DICOM)."""
    def make():
        import SimpleITK as sitk

        from corpus.build import image_values

        path = ws.shared / "ibsi" / "sts" / "STS_002_nifti" / f"{modality}_image.nii.gz"
        return image_values(sitk.ReadImage(str(path)))
    return ws.memo(("mirp", modality), make)


def shared(name, group, kind, files_of, edit, expect, which=None, clean=None, scale=1.0, change=None, note=""):
    """A case on real files of ../shared/data: files_of(ws) copied (edit applied, `change` reorders), read
    as `kind`; `clean(ws)` is what a same-result case must equal (atol 1e-4 for MIRP's float32 geometry)."""
    def build(ws, d):
        files = ws.edit(files_of(ws), d / "in", edit, which)
        files = change(files) if change else files

        def check(img):
            if clean:
                same_image(img, clean(ws), scale=scale, rtol=1e-5, atol=1e-4, geometry_atol=1e-4)
        return Call("reader", lambda: _read(kind, files, ws), check=check)
    return Case(name, group, build, expect, note)


def _dicompyler(ws, name):
    return [ws.shared / "dicompyler_example" / name]


def _dicompyler_dose(ws):
    from COMPASSLib import io as cio
    from corpus.build import image_values

    return ws.memo("dicompyler_dose", lambda: image_values(cio.read_volume(_dicompyler(ws, "rtdose.dcm"), "dose")))


def _dicompyler_rtss(name, edit, expect):
    def build(ws, d):
        files = ws.edit(_dicompyler(ws, "rtss.dcm"), d / "in", edit)

        def read():
            from COMPASSLib import io as cio

            grid = ws.memo("dicompyler_grid", lambda: cio.read_grid(_dicompyler(ws, "rtdose.dcm"), "dose"))
            return cio.read_structures(files, grid, rois=["Heart"], **_where(ws))
        return Call("reader", read)
    return Case(name, RS, build, expect)


def shared_cases():
    def ct(ws):
        return _sts(ws, "CT")

    def pt(ws):
        return _sts(ws, "PET")
    return [
        shared("sts002_ct_equals_mirp_nifti", CT, "ct", ct, None, SAME, clean=lambda ws: _mirp(ws, "CT")),
        shared("sts002_ct_files_shuffled", CT, "ct", ct, None, SAME, clean=lambda ws: _mirp(ws, "CT"),
               change=lambda f: f[1::2] + f[::2]),
        shared("sts002_ct_missing_slice", CT, "ct", ct, lambda ds, i: False,
               refused("missing slice", error=GeometryError), which=20),
        shared("sts002_pet_gml_equals_mirp_nifti", PET, "pet", pt, None, SAME, clean=lambda ws: _mirp(ws, "PET")),
        shared("sts002_pet_bqml_without_radiopharmaceutical", PET, "pet", pt,
               both(put(Units="BQML"), drop("RadiopharmaceuticalInformationSequence")),
               refused("RadiopharmaceuticalInformationSequence")),
        shared("sts002_pet_units_cnts", PET, "pet", pt, put(Units="CNTS"), refused("Units CNTS")),
        shared("dicompyler_rtdose_in_cgy", DOSE, "dose", lambda ws: _dicompyler(ws, "rtdose.dcm"), put(DoseUnits="CGY"),
               SAME, clean=_dicompyler_dose, scale=0.01),
        shared("dicompyler_rtdose_scaling_missing", DOSE, "dose", lambda ws: _dicompyler(ws, "rtdose.dcm"),
               drop("DoseGridScaling"), refused("DoseGridScaling", error=DoseError)),
        _dicompyler_rtss("dicompyler_rtss_heart_contour_not_triples",
                         lambda ds, i: _drop_one_value(_roi_contour(ds).ContourSequence[5]),
                         refused("ContourData", "triples")),
        _dicompyler_rtss("dicompyler_rtss_heart_without_roi_number",
                         lambda ds, i: delattr(next(r for r in ds.StructureSetROISequence if r.ROIName == "Heart"),
                                               "ROINumber"), refused("ROINumber", "Heart")),
    ]


def cases():
    return ct_cases() + pet_cases() + rd_cases() + rs_cases() + shared_cases()
