"""Corpus cases of the other inputs: NRRD / NIfTI / Slicer .seg.nrrd (io.images, through `compass dvh`),
cohort.json (through `compass features`), outcomes.csv (Cohort.outcomes, and `compass run`), the clinical CSV
(`compass features --clinical`), model folders (`compass update`) and output paths (every command that
writes)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from corpus.build import FAST, SAME, Call, Case, read_table, refused, same_table

IMG, MANIFEST, OUTCOMES, CLINICAL, MODEL, OUTPUT = ("NRRD / NIfTI / seg.nrrd (io.images)", "cohort.json (cohort.py)",
                                                    "outcomes.csv (cohort.py)", "clinical CSV (features.clinical)",
                                                    "model folder (twin.persistence)", "output paths (atomic)")


# --- images ---------------------------------------------------------------------------------------------
def _clean_images(ws):
    """dose.nrrd (the fraction-1 RTDOSE as read) and masks.seg.nrrd (its RTSTRUCT on the dose grid, one
    layer per ROI, Slicer's header fields), written once, with the DVH JSON `compass dvh` gives for them
    (the clean DVH of the image cases; a DVH of the RTSTRUCT itself may supersample small ROIs)."""
    def make():
        import SimpleITK as sitk

        from COMPASSLib import io as cio

        folder = ws.root / "clean" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        dose = cio.read_volume([ws.dose], "dose")
        sitk.WriteImage(dose, str(folder / "dose.nrrd"))
        masks = cio.read_structures([ws.rtstruct], dose)
        seg = sitk.Compose([masks[n] for n in masks])
        seg.CopyInformation(dose)
        for i, name in enumerate(masks):
            seg.SetMetaData(f"Segment{i}_ID", f"Segment_{i}")
            seg.SetMetaData(f"Segment{i}_Name", name)
            seg.SetMetaData(f"Segment{i}_LabelValue", "1")
            seg.SetMetaData(f"Segment{i}_Layer", str(i))
        sitk.WriteImage(seg, str(folder / "masks.seg.nrrd"), True)
        _, out, _ = ws.cli(["dvh", "--dose", folder / "dose.nrrd", "--structures", folder / "masks.seg.nrrd", "--json"])
        return {"dose": folder / "dose.nrrd", "seg": folder / "masks.seg.nrrd", "masks": masks,
                "dvh": json.loads(out)["rois"], "image": dose}
    return ws.memo("images", make)


def same_dvh(clean_rows, names=None, atol=1e-6):
    def check(value):
        stdout, _ = value
        got = {r["name"]: r for r in json.loads(stdout)["rois"]}
        want = {r["name"]: r for r in clean_rows if names is None or r["name"] in names}
        assert sorted(got) == sorted(want), f"ROIs {sorted(got)} != {sorted(want)}"
        for name, row in want.items():
            for k, v in row.items():
                if isinstance(v, float) and np.isfinite(v):
                    assert abs(got[name][k] - v) <= atol * max(1.0, abs(v)), f"{name} {k}: {got[name][k]} != {v}"
    return check


def dvh_case(name, make, expect, note=""):
    """`compass dvh --json` of the files make(ws, folder, clean) -> (dose, structures, extra argv, rois)."""
    def build(ws, d):
        clean = _clean_images(ws)
        dose, structures, extra, rois = make(ws, d / "in", clean)
        argv = ["dvh", "--dose", dose, "--structures", structures, "--json", *extra]
        return Call("cli", argv, check=same_dvh(clean["dvh"], rois))
    return Case(name, IMG, build, expect, note)


def _write(image, path, **meta):
    import SimpleITK as sitk

    for k, v in meta.items():
        image.SetMetaData(k, v)
    sitk.WriteImage(image, str(path))
    return path


def _dose_variant(fn, suffix=".nrrd"):
    """A dose NRRD whose array is fn(array) (same geometry)."""
    def make(ws, folder, clean):
        import SimpleITK as sitk

        array = sitk.GetArrayFromImage(clean["image"]).astype(np.float32)
        image = sitk.GetImageFromArray(fn(array.copy()))
        image.CopyInformation(clean["image"])
        return _write(image, folder / f"dose{suffix}"), clean["seg"], [], None
    return make


def _seg_variant(edit, extra=()):
    """masks.seg.nrrd with its header fields changed by edit(fields dict)."""
    def make(ws, folder, clean):
        import SimpleITK as sitk

        seg = sitk.ReadImage(str(clean["seg"]))
        fields = {k: seg.GetMetaData(k) for k in seg.GetMetaDataKeys() if k.startswith("Segment")}
        edit(fields)
        for k in [k for k in seg.GetMetaDataKeys() if k.startswith("Segment")]:
            seg.EraseMetaData(k)
        for k, v in fields.items():
            seg.SetMetaData(k, v)
        sitk.WriteImage(seg, str(folder / "masks.seg.nrrd"), True)
        return clean["dose"], folder / "masks.seg.nrrd", list(extra), None
    return make


def _file_variant(write, which="dose"):
    def make(ws, folder, clean):
        path = write(folder, clean)
        return (path, clean["seg"], [], None) if which == "dose" else (clean["dose"], path, [], None)
    return make


def _labelmap_with_colours(ws, folder, clean):
    import SimpleITK as sitk

    masks = clean["masks"]
    label = sitk.Cast(masks["Heart"], sitk.sitkUInt8) + 2 * sitk.Cast(masks["SpinalCord"], sitk.sitkUInt8)
    label.CopyInformation(clean["image"])
    sitk.WriteImage(label, str(folder / "organs.nrrd"))
    (folder / "organs.ctbl").write_text("# Slicer colour table\n0 Background 0 0 0 0\n1 Heart 255 0 0 255\n"
                                        "2 SpinalCord 0 255 0 255\n")
    return clean["dose"], folder / "organs.nrrd", [], ["Heart", "SpinalCord"]


def _nifti(ws, folder, clean):
    import SimpleITK as sitk

    sitk.WriteImage(clean["image"], str(folder / "dose.nii.gz"))
    return folder / "dose.nii.gz", clean["seg"], [], None


def _rtdose_with_seg(ws, folder, clean):
    return ws.dose, clean["seg"], [], None


def _truncated(folder, clean):
    data = Path(clean["dose"]).read_bytes()
    (folder / "dose.nrrd").write_bytes(data[: len(data) // 2])
    return folder / "dose.nrrd"


def _garbage(folder, clean):
    (folder / "dose.nrrd").write_bytes(os.urandom(4096))
    return folder / "dose.nrrd"


def _two_d(folder, clean):
    import SimpleITK as sitk

    return _write(sitk.GetImageFromArray(np.ones((8, 8), np.float32)), folder / "dose.nrrd")


def _vector(folder, clean):
    import SimpleITK as sitk

    image = sitk.Compose([clean["image"], clean["image"]])
    return _write(image, folder / "dose.nrrd")


def _float_labelmap(folder, clean):
    import SimpleITK as sitk

    label = sitk.Cast(clean["masks"]["Heart"], sitk.sitkFloat32) * 0.5
    label.CopyInformation(clean["image"])
    return _write(label, folder / "labels.nrrd")


def _missing(folder, clean):
    return folder / "absent.nrrd"


def image_cases():
    return [
        dvh_case("rtdose_with_seg_nrrd", _rtdose_with_seg, SAME),
        dvh_case("nifti_dose", _nifti, SAME),
        dvh_case("labelmap_with_colour_table", _labelmap_with_colours, SAME),
        dvh_case("nrrd_dose_truncated", _file_variant(_truncated), refused("cannot read image", "dose.nrrd")),
        dvh_case("nrrd_dose_garbage", _file_variant(_garbage), refused("cannot read image")),
        dvh_case("nrrd_dose_2d", _file_variant(_two_d), refused("3D")),
        dvh_case("nrrd_dose_vector", _file_variant(_vector), refused("components")),
        dvh_case("nrrd_dose_missing", _file_variant(_missing), refused("not found", "absent.nrrd")),
        dvh_case("nrrd_dose_nan", _dose_variant(lambda a: np.where(a > a.max() / 2, np.nan, a).astype(np.float32)),
                 refused("NaN")),
        dvh_case("nrrd_dose_negative", _dose_variant(lambda a: a - 1.0), refused("negative")),
        dvh_case("labelmap_not_integer", _file_variant(_float_labelmap, "structures"), refused("non-integer")),
        dvh_case("seg_nrrd_layer_out_of_range", _seg_variant(lambda f: f.update(Segment0_Layer="9")),
                 refused("layer 9")),
        dvh_case("seg_nrrd_label_value_text", _seg_variant(lambda f: f.update(Segment1_LabelValue="one")),
                 refused("LabelValue")),
        dvh_case("seg_nrrd_segment_asked_for_absent", _seg_variant(lambda f: None, ["--roi", "Nope"]),
                 refused("not in file", "Nope")),
        dvh_case("seg_nrrd_without_segment_ids", _seg_variant(lambda f: [f.pop(k) for k in list(f)
                                                                         if k.endswith("_ID")]), SAME),
    ]


# --- cohort.json ----------------------------------------------------------------------------------------
def features_argv(manifest, out, cache=None, extra=()):
    argv = ["features", manifest, "-o", Path(out) / "table.csv", "--profile", "fast", "--no-progress", *extra]
    return argv + (["--cache", cache] if cache else [])


def manifest_case(name, edit, expect, note="", text=None):
    """`compass features` of the one-patient, one-fraction manifest changed by edit(d, ws, folder) (or
    replaced by `text`)."""
    def build(ws, d):
        doc = ws.manifest_dict()
        if edit is not None:
            doc = edit(doc, ws, d / "in") or doc
        manifest = ws.write_manifest(d / "in", text if text is not None else doc)
        same = expect.kind == "same"

        def check(value):
            same_table(read_table(d / "out" / "table.csv"), ws.clean_table())
        return Call("cli", features_argv(manifest, d / "out", ws.cache if same else None), out=d / "out",
                    check=check)
    return Case(name, MANIFEST, build, expect, note)


def _f(doc):
    return doc["patients"][0]["fractions"][0]


def _set_fraction(**values):
    def edit(doc, ws, folder):
        _f(doc).update(values)
    return edit


def _patient(**values):
    def edit(doc, ws, folder):
        doc["patients"][0].update(values)
    return edit


def _fraction_copy(index):
    def edit(doc, ws, folder):
        doc["patients"][0]["fractions"].append({**json.loads(json.dumps(_f(doc))), "index": index})
    return edit


def _missing_file(modality, k=0):
    def edit(doc, ws, folder):
        files = _f(doc)[modality]
        files[k] = str(Path(files[k]).with_name("gone.dcm"))
    return edit


def _relative_paths(doc, ws, folder):
    root = ws.cohort.root
    for f in doc["patients"][0]["fractions"]:
        for m in ("ct", "pet", "dose", "rtstruct"):
            f[m] = [os.path.relpath(p, root) for p in f[m]]


def _fraction_dose_edited(**values):
    """The fraction's RTDOSE replaced by a copy with `values` set (DoseSummationType, DoseType), or its
    DoseGridScaling multiplied by values["scale"] (a cGy dose stored as Gy)."""
    def edit(doc, ws, folder):
        import pydicom

        ds = pydicom.dcmread(_f(doc)["dose"][0])
        tags = dict(values)
        scale = tags.pop("scale", None)
        for k, v in tags.items():
            setattr(ds, k, v)
        if scale:
            ds.DoseGridScaling = f"{float(ds.DoseGridScaling) * scale:.10g}"
        Path(folder).mkdir(parents=True, exist_ok=True)
        ds.save_as(Path(folder) / "RD_edited.dcm")
        _f(doc)["dose"] = [str(Path(folder) / "RD_edited.dcm")]
    return edit


def manifest_cases():
    return [
        manifest_case("manifest_plan_dose_as_fraction_dose", _fraction_dose_edited(DoseSummationType="PLAN"),
                      refused("DoseSummationType PLAN", "one fraction"), note="was read: a course as one fraction"),
        manifest_case("manifest_bed_map_as_fraction_dose", _fraction_dose_edited(DoseType="EFFECTIVE"),
                      refused("DoseType EFFECTIVE", "physical"), note="was read: a BED of a BED"),
        manifest_case("manifest_cgy_dose_stored_as_gy", _fraction_dose_edited(scale=100.0),
                      refused("hottest voxel", "Gy"), note="was read: every dose 100x"),
        manifest_case("manifest_not_json", None, refused("not valid JSON", "cohort.json"), text="{patients: [}"),
        manifest_case("manifest_empty_file", None, refused("not valid JSON"), text=""),
        manifest_case("manifest_top_level_list", None, refused("not a COMPASS cohort manifest"), text="[]"),
        manifest_case("manifest_without_patients", lambda d, ws, f: {"format_version": 1},
                      refused("not a COMPASS cohort manifest")),
        manifest_case("manifest_patients_not_a_list", lambda d, ws, f: {**d, "patients": {"SYN001": d["patients"][0]}},
                      refused("patients", "list")),
        manifest_case("manifest_patient_entry_text", lambda d, ws, f: {**d, "patients": ["SYN001"]},
                      refused("patient entry 0")),
        manifest_case("manifest_patient_without_id", lambda d, ws, f: d["patients"][0].pop("id") and None,
                      refused("patient entry 0", "id")),
        manifest_case("manifest_patient_twice", lambda d, ws, f: d["patients"].append(json.loads(json.dumps(
            d["patients"][0]))), refused("twice")),
        manifest_case("manifest_fraction_index_twice", _fraction_copy(1), refused("fraction index 1 twice")),
        manifest_case("manifest_fraction_index_text", _set_fraction(index="1"), refused("not a whole number")),
        manifest_case("manifest_fraction_index_float", _set_fraction(index=1.5), refused("not a whole number")),
        manifest_case("manifest_fraction_index_bool", _set_fraction(index=True), refused("not a whole number")),
        manifest_case("manifest_fraction_without_index", lambda d, ws, f: _f(d).pop("index") and None,
                      refused("malformed")),
        manifest_case("manifest_fraction_unknown_key", _set_fraction(doze=[]), refused("malformed", "doze")),
        manifest_case("manifest_dose_as_text_not_list", lambda d, ws, f: _f(d).update(dose=_f(d)["dose"][0]),
                      refused("dose", "list"), note="each character was taken for a file name"),
        manifest_case("manifest_file_name_a_number", _set_fraction(dose=[5]), refused("dose", "text")),
        manifest_case("manifest_dose_file_missing", _missing_file("dose"), refused("dose file", "missing",
                                                                                  "gone.dcm")),
        manifest_case("manifest_ct_slice_missing", _missing_file("pet", 3), refused("missing", "gone.dcm")),
        manifest_case("manifest_format_version_99", lambda d, ws, f: d.update(format_version=99),
                      refused("format_version 99")),
        manifest_case("manifest_format_version_text", lambda d, ws, f: d.update(format_version="1"),
                      refused("format_version")),
        manifest_case("manifest_organs_not_a_map", _patient(organs=["Heart", "Esophagus"]), refused("organs")),
        manifest_case("manifest_dose_twice_in_fraction", lambda d, ws, f: _f(d).update(dose=_f(d)["dose"] * 2),
                      refused("listed twice")),
        manifest_case("manifest_fraction_copied", _fraction_copy(2), refused("repeats fraction 1")),
        manifest_case("manifest_no_patients", lambda d, ws, f: d.update(patients=[]), refused("no patients"),
                      note="wrote an empty table, exit 0"),
        manifest_case("manifest_patient_without_fractions", lambda d, ws, f: d["patients"][0].update(fractions=[]),
                      refused("no fractions"), note="wrote an empty table, exit 0"),
        manifest_case("manifest_fraction_without_dose", _set_fraction(dose=[]), refused("no dose file")),
        manifest_case("manifest_dose_of_another_patient", lambda d, ws, f: _f(d).update(dose=[str(ws.other_dose)]),
                      refused("FrameOfReferenceUID")),
        manifest_case("manifest_structures_of_another_patient",
                      lambda d, ws, f: _f(d).update(rtstruct=[str(ws.other_rtstruct)]), refused("FrameOfReferenceUID")),
        manifest_case("manifest_pet_listed_as_planning_ct",
                      lambda d, ws, f: d["patients"][0]["planning"].update(ct=_f(d)["pet"]), refused("wrong modality")),
        manifest_case("manifest_relative_paths_elsewhere", _relative_paths, refused("missing")),
        manifest_case("manifest_unknown_top_level_key", lambda d, ws, f: d.update(study="lung 2026"), SAME),
        manifest_case("manifest_keys_reordered", lambda d, ws, f: dict(reversed(list(d.items()))), SAME),
    ]


# --- outcomes.csv ---------------------------------------------------------------------------------------
def outcomes_case(name, change, expect, note=""):
    """Cohort.outcomes() of the three-patient manifest with outcomes.csv = change(clean text) (str or bytes)."""
    def build(ws, d):
        manifest = ws.write_manifest(d / "in", ws.manifest_dict(ws.three), change(ws.outcomes_text()))

        def read():
            from COMPASSLib.cohort import Cohort

            return Cohort.load(manifest).outcomes()

        def check(rows):
            from COMPASSLib.cohort import Cohort

            clean = Cohort.load(ws.cohort_json).outcomes()
            assert [vars(r) for r in rows] == [vars(r) for r in clean], "outcome rows differ"
        return Call("reader", read, check=check)
    return Case(name, OUTCOMES, build, expect, note)


def _cell(k, column, value):
    """The outcomes text with the `column` cell of data row k (1-based) set to value(old) (or to `value`)."""
    def change(text):
        lines = text.splitlines(keepends=True)
        head = lines[0].strip().split(",")
        cells = lines[k].rstrip("\r\n").split(",")
        old = cells[head.index(column)]
        cells[head.index(column)] = value(old) if callable(value) else value
        lines[k] = ",".join(cells) + "\n"
        return "".join(lines)
    return change


def _toxic_row(text) -> int:
    """The first data row with an onset fraction (a toxic organ)."""
    return next(k for k, line in enumerate(text.splitlines()) if k and line.split(",")[3].strip())


def _on_toxic_row(column, value):
    return lambda text: _cell(_toxic_row(text), column, value)(text)


def _run_outcomes_case(name, change, expect):
    """`compass run` of the three-patient manifest with outcomes.csv = change(text): refused before any work."""
    def build(ws, d):
        manifest = ws.write_manifest(d / "in", ws.manifest_dict(ws.three), change(ws.outcomes_text()))
        return Call("cli", ["run", manifest, "-o", d / "out", *FAST], out=d / "out")
    return Case(name, OUTCOMES, build, expect)


OUT_WHERE = ("file", "patient")
SYNONYMS = {"SpinalCord": "Spinal Cord", "Heart": "HEART", "Esophagus": "ESOPHAGUS"}   # canonical -> a synonym


def outcomes_cases():
    w = OUT_WHERE
    return [
        outcomes_case("outcomes_grade_not_whole", _cell(2, "grade", "2.7"), refused("line 3", "2.7", where=w)),
        outcomes_case("outcomes_grade_7", _cell(2, "grade", "7"), refused("outside CTCAE", where=w)),
        outcomes_case("outcomes_grade_text", _cell(2, "grade", "severe"), refused("not a number", where=w)),
        outcomes_case("outcomes_onset_negative", _on_toxic_row("onset_fraction", "-1"), refused("onset_fraction",
                                                                                               ">= 0", where=w)),
        outcomes_case("outcomes_onset_not_whole", _on_toxic_row("onset_fraction", "3.5"),
                      refused("onset_fraction", "3.5", where=w)),
        outcomes_case("outcomes_row_repeated", lambda t: t + t.splitlines(keepends=True)[1],
                      refused("repeats line 2", where=w)),
        outcomes_case("outcomes_row_conflicting",
                      lambda t: t + _cell(1, "grade", lambda g: str((int(g) + 1) % 6))(t).splitlines(keepends=True)[1],
                      refused("conflicts with line 2", where=w)),
        outcomes_case("outcomes_patient_id_typo", lambda t: t.replace("SYN002,", "SYNO02,"),
                      refused("SYNO02", "closest known id", where=w)),
        outcomes_case("outcomes_organ_name_typo", _cell(2, "organ", lambda o: o + "s"), refused("s'", "closest",
                                                                                               where=w),
                      note="the row was used for an organ no patient has: the organ's outcome silently lost"),
        outcomes_case("outcomes_organ_synonym", _cell(1, "organ", lambda o: SYNONYMS.get(o, o.upper())),
                      refused("canonical name", where=w)),
        outcomes_case("outcomes_no_grade_column", lambda t: t.replace(",grade,", ",severity,"),
                      refused("lacks column", "grade", where=("file",))),
        outcomes_case("outcomes_empty_file", lambda t: "", refused("lacks column", where=("file",))),
        outcomes_case("outcomes_empty_patient_cell", _cell(4, "patient", ""), refused("must not be empty",
                                                                                     where=("file",))),
        outcomes_case("outcomes_latin1_bytes", lambda t: (t.replace("SpinalCord,2,4", "SpinalCord,2,4") +
                                                          "# r\xe9sum\xe9\n").encode("latin-1"),
                      refused("UTF-8", where=("file",)), note="was a UnicodeDecodeError traceback"),
        outcomes_case("outcomes_semicolons", lambda t: t.replace(",", ";"), refused("lacks column", where=("file",))),
        outcomes_case("outcomes_excel_bom", lambda t: "\ufeff" + t, SAME,
                      note="a CSV saved by Excel (UTF-8 with BOM) was refused: 'lacks column patient'"),
        outcomes_case("outcomes_crlf_and_spaces", lambda t: t.replace(",", " , ").replace("\n", "\r\n"), SAME),
        outcomes_case("outcomes_extra_column", lambda t: t.replace("\n", ",x\n"), SAME),
        _run_outcomes_case("run_outcomes_missing", lambda t: "patient,organ,grade,onset_fraction\n",
                           refused("no outcomes")),
        _run_outcomes_case("run_outcomes_of_one_patient",
                           lambda t: "".join(line for line in t.splitlines(keepends=True)
                                             if not line.startswith(("SYN002", "SYN003"))),
                           refused("at least 3 patients")),
        _run_outcomes_case("run_outcomes_typo", lambda t: t.replace("SYN003,", "SYN03,"),
                           refused("SYN03", "closest known id")),
    ]


# --- clinical CSV ---------------------------------------------------------------------------------------
CLINICAL_TEXT = "patient,fraction,WBC,CRP mg/l\nSYN001,1,6.1,3.5\nSYN001,2,5.2,8.0\nSYN002,1,7.0,1.0\n"


def _clinical_file(ws):
    def make():
        path = ws.root / "clean" / "clinical.csv"
        path.write_text(CLINICAL_TEXT.replace("SYN001", ws.pid))
        return path
    return ws.memo("clinical", make)


def clinical_case(name, change, expect, note=""):
    def build(ws, d):
        clean = _clinical_file(ws)
        text = change(clean.read_text())
        path = d / "in" / "clinical.csv"
        if text is not None:
            path.write_bytes(text if isinstance(text, bytes) else text.encode())

        def check(value):
            same_table(read_table(d / "out" / "table.csv"), ws.clean_table(clinical=clean))
        return Call("cli", features_argv(ws.one, d / "out", ws.cache, ["--clinical", path]), out=d / "out",
                    check=check)
    return Case(name, CLINICAL, build, expect, note)


def clinical_cases():
    return [
        clinical_case("clinical_missing_file", lambda t: None, refused("not found", "clinical.csv")),
        clinical_case("clinical_no_fraction_column", lambda t: t.replace("fraction", "day"), refused("lacks column",
                                                                                                  "fraction")),
        clinical_case("clinical_fraction_text", lambda t: t.replace(",1,6.1", ",first,6.1"),
                      refused("not an integer")),
        clinical_case("clinical_row_twice", lambda t: t + t.splitlines(keepends=True)[1],
                      refused("more than one row")),
        clinical_case("clinical_columns_collide", lambda t: t.replace("CRP mg/l", "wbc"), refused("collide")),
        clinical_case("clinical_not_utf8", lambda t: t.encode("utf-16"), refused("clinical CSV")),
        clinical_case("clinical_empty_file", lambda t: "", refused("unreadable")),
        clinical_case("clinical_no_patient_of_the_cohort", lambda t: t.replace("SYN00", "PAT00"),
                      refused("PAT001", "closest"), note="every clin_ column was silently NaN"),
        clinical_case("clinical_extra_rows_of_other_patients", lambda t: t + "SYN009,1,1,1\n", SAME),
        clinical_case("clinical_reordered_rows_and_spaces",
                      lambda t: t.splitlines()[0] + "\n" + "\n".join(f" {x}" for x in reversed(t.splitlines()[1:]))
                      + "\n", SAME),
    ]


# --- model folders --------------------------------------------------------------------------------------
def _update_lines(stdout):
    return [line for line in stdout.splitlines() if " after fraction " in line]


def clean_update(ws):
    def make():
        run = ws.clean_run()
        _, out, _ = ws.cli(["update", run / "model", ws.one, "--cache", run / "cache"])
        return _update_lines(out)
    return ws.memo("update", make)


def model_case(name, edit, expect, note=""):
    """`compass update MODEL one-patient-manifest` with a copy of the clean run's model changed by edit(folder)."""
    def build(ws, d):
        run = ws.clean_run()
        model = d / "in" / "model"
        shutil.copytree(run / "model", model)
        edit(model)
        same = expect.kind == "same"
        cache = run / "cache" if same else d / "out" / "cache"

        def check(value):
            assert _update_lines(value[0]) == clean_update(ws), "risks differ from the clean model's"
        return Call("cli", ["update", model, ws.one, "--cache", cache], out=None if same else d / "out",
                    check=check)
    return Case(name, MODEL, build, expect, note)


def _json_edit(fn, recompute=False):
    def edit(model):
        from COMPASSLib.twin import persistence

        doc = json.loads((model / "model.json").read_text())
        fn(doc)
        if recompute:
            doc["checksums"]["model.json"] = persistence.document_sha256(doc)
        (model / "model.json").write_text(json.dumps(doc, indent=2))
    return edit


def _swap_features(doc):
    cols = doc["parts"][0]["preprocessor"]["columns"]
    cols[0], cols[1] = cols[1], cols[0]


def _short_scaler(doc):
    pre = doc["parts"][0]["preprocessor"]
    key = next(k for k in ("mean", "scaler_mean", "center") if k in pre) if any(
        k in pre for k in ("mean", "scaler_mean", "center")) else None
    if key is None:
        pre["columns"] = pre["columns"][:-1]
    else:
        pre[key] = pre[key][:-1]


def _flip_weight_byte(model):
    path = model / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-9] ^= 0x40
    path.write_bytes(bytes(data))


def _truncate_weights(model):
    path = model / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:200])


def model_cases():
    return [
        model_case("model_json_feature_names_swapped", _json_edit(_swap_features), refused("model.json"),
                   note="used to score differently without a word"),
        model_case("model_weights_byte_flipped", _flip_weight_byte, refused("weights.safetensors")),
        model_case("model_weights_truncated", _truncate_weights, refused("weights.safetensors")),
        model_case("model_weights_missing", lambda m: (m / "weights.safetensors").unlink(),
                   refused("weights.safetensors")),
        model_case("model_json_missing", lambda m: (m / "model.json").unlink(), refused("model.json")),
        model_case("model_json_not_json", lambda m: (m / "model.json").write_text("{\"parts\": ["),
                   refused("model.json")),
        model_case("model_arrays_short_checksum_recomputed", _json_edit(_short_scaler, recompute=True),
                   refused("model.json")),
        model_case("model_folder_missing", lambda m: shutil.rmtree(m), refused("model")),
        model_case("model_folder_is_a_file", lambda m: (shutil.rmtree(m), m.write_text("model\n")), refused("model")),
        model_case("model_checksums_removed", _json_edit(lambda doc: doc.pop("checksums")), SAME),
        model_case("model_extra_file_beside", lambda m: (m / "notes.txt").write_text("trained on Monday\n"), SAME),
    ]


# --- output paths ---------------------------------------------------------------------------------------
def output_case(name, argv_of, expect, prepare=None, note="", check=None):
    """argv_of(ws, folder, out) with OUT = folder/out prepared by prepare(out)."""
    def build(ws, d):
        out = d / "out"
        if prepare:
            prepare(out)
        argv = argv_of(ws, d, out)
        return Call("cli", argv, out=out, check=(lambda value: check(ws, value)) if check else None)
    return Case(name, OUTPUT, build, expect, note)


def _a_file(out):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("mine\n")


def _a_folder(out):
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine\n")


def _bed_matches_clean(ws, value):
    import SimpleITK as sitk

    stdout, out = value
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    d = sitk.GetArrayFromImage(sitk.ReadImage(str(_clean_images(ws)["dose"]))).astype(np.float64)
    np.testing.assert_allclose(got, d * (1 + d / 3.0), rtol=1e-5, atol=1e-6)


def output_cases():
    def bed(ws, d, out):
        return ["bed", "--alpha-beta", "3", ws.dose, "-o", out]
    return [
        output_case("bed_output_under_a_file", lambda ws, d, out: bed(ws, d, out / "bed.nrrd"),
                    refused("is a file, not a folder"), prepare=_a_file),
        output_case("bed_output_is_a_folder", lambda ws, d, out: bed(ws, d, out / "bed.nrrd"),
                    refused("existing folder"), prepare=lambda out: _a_folder(out / "bed.nrrd")),
        output_case("bed_output_bad_suffix", lambda ws, d, out: bed(ws, d, d / "out.txt"), refused("must end in")),
        output_case("bed_output_existing_file_is_replaced", lambda ws, d, out: bed(ws, d, d / "out" / "bed.nrrd"),
                    SAME, prepare=lambda out: (out.mkdir(parents=True), (out / "bed.nrrd").write_text("old\n")),
                    check=lambda ws, v: _bed_matches_clean(ws, (v[0], Path(v[1]) / "bed.nrrd"))),
        output_case("features_output_not_csv", lambda ws, d, out: ["features", ws.one, "-o", out / "t.txt"],
                    refused(".csv or .parquet")),
        output_case("features_output_is_a_folder", lambda ws, d, out: ["features", ws.one, "-o", out / "t.csv"],
                    refused("existing folder"), prepare=lambda out: _a_folder(out / "t.csv")),
        output_case("features_output_not_writable", lambda ws, d, out: ["features", ws.one, "-o",
                                                                         "/proc/compass/t.csv"],
                    refused("not writable")),
        output_case("texture_output_is_a_file", lambda ws, d, out: ["texture", "--image", _clean_images(ws)["dose"],
                                                                    "--mask", _clean_images(ws)["dose"],
                                                                    "--bin-width", "1", "-o", out],
                    refused("existing file"), prepare=_a_file),
        output_case("run_output_is_a_file", lambda ws, d, out: ["run", ws.three, "-o", out, *FAST],
                    refused("existing file"), prepare=_a_file),
        output_case("run_output_under_a_file", lambda ws, d, out: ["run", ws.three, "-o", out / "results", *FAST],
                    refused("is a file, not a folder"), prepare=_a_file),
        output_case("scan_output_under_a_file", lambda ws, d, out: ["scan", ws.root / "clean", "-o",
                                                                    out / "cohort.json"],
                    refused("is a file, not a folder"), prepare=_a_file),
        output_case("synth_output_under_a_file", lambda ws, d, out: ["synth", out / "c", "--patients", "1",
                                                                     "--size", "small"],
                    refused("is a file, not a folder"), prepare=_a_file),
        output_case("update_cache_not_writable", lambda ws, d, out: ["update", ws.clean_run() / "model", ws.one,
                                                                     "--cache", "/proc/compass/cache"],
                    refused("not writable")),
        output_case("report_output_missing", lambda ws, d, out: ["report", out], refused("metrics.json")),
    ]


def cases():
    return image_cases() + manifest_cases() + outcomes_cases() + clinical_cases() + model_cases() + output_cases()
