"""Corpus cases of the commands, run in-process through `COMPASSLib.cli.main(argv)` (`scan`, `bed`, `dvh`,
`features`, `texture`, `run`, `update`, `report`) and the batch script (`COMPASSLib.batch.main(argv)`)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from corpus.build import FAST, SAME, Call, Case, read_table, refused, same_table
from corpus.cases_files import _clean_images, features_argv, same_dvh

SCAN, BED, DVH, FEATURES, TEXTURE, RUN, UPDATE, REPORT, BATCH = (
    "compass scan", "compass bed", "compass dvh", "compass features", "compass texture", "compass run",
    "compass update", "compass report", "batch script (batch.py)")


def cli_case(group, name, argv_of, expect, out=lambda d: d / "out", check=None, note=""):
    """argv_of(ws, folder) -> argv; `out(folder)` the output path; check(ws, folder, (stdout, out))."""
    def build(ws, d):
        argv = argv_of(ws, d)
        return Call("batch" if group == BATCH else "cli", argv, out=out(d) if out else None,
                    check=(lambda value: check(ws, d, value)) if check else None)
    return Case(name, group, build, expect, note)


# --- scan -----------------------------------------------------------------------------------------------
def _tree(ws, folder):
    """A copy of patient 1's DICOM folder (plan and three fractions) under folder/dicom."""
    target = Path(folder) / "dicom" / ws.pid
    shutil.copytree(ws.cohort.root / ws.pid, target)
    return target.parent


def _clean_scan(ws):
    def make():
        tree = _tree(ws, ws.root / "clean" / "scan")
        ws.cli(["scan", tree, "-o", ws.root / "clean" / "scan" / "cohort.json"])
        return _manifest_summary(ws.root / "clean" / "scan" / "cohort.json")
    return ws.memo("scan", make)


def _manifest_summary(path):
    """Patients, fraction indices and file names (not folders) of a manifest."""
    doc = json.loads(Path(path).read_text())
    return [(p["id"], [(f["index"], {m: sorted(Path(x).name for x in f[m]) for m in ("ct", "pet", "dose", "rtstruct")})
                       for f in p["fractions"]]) for p in doc["patients"]]


def _scan_same(ws, d, value):
    assert _manifest_summary(d / "out" / "cohort.json") == _clean_scan(ws), "manifest differs from the clean scan"


def _junk_tree(ws, d):
    tree = _tree(ws, d / "in")
    (tree / "README.txt").write_text("exported 2026-01-05\n")
    (tree / ws.pid / "DICOMDIR.bak").write_bytes(b"\0" * 300)
    (tree / ws.pid / "F1" / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    return ["scan", tree, "-o", d / "out" / "cohort.json"]


def _no_dose_tree(ws, d):
    tree = _tree(ws, d / "in")
    for rd in tree.rglob("RD*.dcm"):
        rd.unlink()
    return ["scan", tree, "-o", d / "out" / "cohort.json", "--strict"]


def scan_cases():
    return [
        cli_case(SCAN, "scan_folder_missing", lambda ws, d: ["scan", d / "in" / "absent", "-o", d / "out" / "c.json"],
                 refused("absent")),
        cli_case(SCAN, "scan_a_file_not_a_folder", lambda ws, d: ["scan", ws.dose, "-o", d / "out" / "c.json"],
                 refused("not a folder")),
        cli_case(SCAN, "scan_empty_folder", lambda ws, d: ["scan", d / "in", "-o", d / "out" / "c.json"],
                 refused("no DICOM"), note="wrote a manifest without patients, exit 0"),
        cli_case(SCAN, "scan_strict_without_dose", _no_dose_tree, refused("--strict", "fraction 1, 2, 3")),
        cli_case(SCAN, "scan_with_other_files_in_the_tree", _junk_tree, SAME, check=_scan_same),
    ]


# --- bed ------------------------------------------------------------------------------------------------
def _dose_arrays(ws, *paths):
    from COMPASSLib import io as cio
    from corpus.build import _array

    return [_array(cio.read_volume([p], "dose")).astype(np.float64) for p in paths]


def _bed_check(quantity="BED", ab=3.0, reader=None):
    def check(ws, d, value):
        import SimpleITK as sitk

        d1, d2 = _dose_arrays(ws, ws.dose, ws.dose2)
        bed = d1 * (1 + d1 / ab) + d2 * (1 + d2 / ab)
        want = bed / (1 + 2.0 / ab) if quantity == "EQD2" else bed
        out = Path(value[0].strip().splitlines()[-1])
        got = reader(out) if reader else sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())
    return check


def _read_rtdose_out(path):
    from COMPASSLib.io.rtdose import read_rtdose
    from corpus.build import _array

    return _array(read_rtdose(path))


def _dose_copy(ws, d, **values):
    """A copy of the clean fraction dose with `values` set (a plan dose, a BED map given as a dose)."""
    import pydicom

    ds = pydicom.dcmread(ws.dose)
    for k, v in values.items():
        setattr(ds, k, v)
    (d / "in").mkdir(parents=True, exist_ok=True)
    ds.save_as(d / "in" / "RD.dcm")
    return d / "in" / "RD.dcm"


def bed_cases():
    def argv(*extra, out="bed.nrrd"):
        return lambda ws, d: ["bed", ws.dose, ws.dose2, *[x(ws, d) if callable(x) else x for x in extra], "-o",
                              d / "out" / out]
    other = lambda ws, d: ws.other_dose            # noqa: E731
    other_rs = lambda ws, d: ws.other_rtstruct     # noqa: E731
    return [
        cli_case(BED, "bed_no_alpha_beta", argv(), refused("--alpha-beta")),
        cli_case(BED, "bed_alpha_beta_zero", argv("--alpha-beta", "0"), refused("alpha/beta")),
        cli_case(BED, "bed_alpha_beta_negative", argv("--alpha-beta", "-3"), refused("alpha/beta")),
        cli_case(BED, "bed_alpha_beta_nan", argv("--alpha-beta", "nan"), refused("alpha/beta")),
        cli_case(BED, "bed_organ_alpha_beta_text", argv("--structures", lambda ws, d: ws.rtstruct,
                                                        "--organ-alpha-beta", "Heart=three"), refused("ORGAN=AB")),
        cli_case(BED, "bed_organ_alpha_beta_negative", argv("--structures", lambda ws, d: ws.rtstruct,
                                                            "--organ-alpha-beta", "Heart=-2"), refused("alpha/beta")),
        cli_case(BED, "bed_organ_alpha_beta_without_structures", argv("--alpha-beta", "3", "--organ-alpha-beta",
                                                                      "Heart=2"), refused("needs --structures")),
        cli_case(BED, "bed_doses_of_two_patients", lambda ws, d: ["bed", "--alpha-beta", "3", ws.dose, other(ws, d),
                                                                  "-o", d / "out" / "bed.nrrd"],
                 refused("not one patient's", "PatientID")),
        cli_case(BED, "bed_dose_file_missing", lambda ws, d: ["bed", "--alpha-beta", "3", ws.dose, d / "in" / "RD.dcm",
                                                              "-o", d / "out" / "bed.nrrd"],
                 refused("not found", "fraction 2")),
        cli_case(BED, "bed_ct_slice_as_dose", lambda ws, d: ["bed", "--alpha-beta", "3", ws.ct[0], "-o",
                                                             d / "out" / "bed.nrrd"], refused("wrong modality")),
        cli_case(BED, "bed_plan_dose_as_fraction", lambda ws, d: ["bed", "--alpha-beta", "3", _dose_copy(
            ws, d, DoseSummationType="PLAN"), "-o", d / "out" / "bed.nrrd"], refused("DoseSummationType PLAN")),
        cli_case(BED, "bed_of_a_bed", lambda ws, d: ["bed", "--alpha-beta", "3", _dose_copy(
            ws, d, DoseType="EFFECTIVE"), "-o", d / "out" / "bed.nrrd"], refused("DoseType EFFECTIVE")),
        cli_case(BED, "bed_structures_of_another_patient", argv("--structures", other_rs),
                 refused("not one patient's")),
        cli_case(BED, "bed_two_fractions", argv("--alpha-beta", "3"), SAME, check=_bed_check()),
        cli_case(BED, "bed_eqd2", argv("--alpha-beta", "3", "--eqd2"), SAME, check=_bed_check("EQD2")),
        cli_case(BED, "bed_dicom_output", argv("--alpha-beta", "3", out="bed.dcm"), SAME,
                 check=_bed_check(reader=_read_rtdose_out)),
    ]


# --- dvh ------------------------------------------------------------------------------------------------
def dvh_cases():
    def clean(ws):
        return _clean_images(ws)["dvh"]

    def dvh(*args):
        return lambda ws, d: ["dvh", *[a(ws, d) if callable(a) else a for a in args], "--json"]

    def relative(ws, d):
        import pydicom

        ds = pydicom.dcmread(ws.dose)
        ds.DoseUnits = "RELATIVE"
        ds.save_as(d / "in" / "RD.dcm")
        return d / "in" / "RD.dcm"

    def with_planning_dvh(data=None):
        """The fraction's RTDOSE with a planning-system DVH of Heart added: `data` as its DVHData, or (None)
        COMPASS's own cumulative Heart DVH at 0.01 Gy bins (each value at lower edge + half a bin)."""
        def make(ws, d):
            import numpy as np
            import pydicom
            from pydicom.dataset import Dataset

            from COMPASSLib import dose as dose_mod
            from COMPASSLib.io.rtdose import read_rtdose
            from COMPASSLib.io.rtstruct import read_rtstruct_contours, roi_numbers
            from COMPASSLib.io.shape_interpolation import BetweenPlanes

            number = next(k for k, name in roi_numbers(ws.rtstruct).items() if name == "Heart")
            values = data
            if values is None:
                grid = read_rtdose(ws.dose)
                contours = read_rtstruct_contours(ws.rtstruct, grid, rois=["Heart"])["Heart"]
                f = 2
                solid = BetweenPlanes(contours, grid, f, dose_mod.sub_slices(f), "Heart")
                dvh = dose_mod.supersampled_dvh(grid, solid, f, slice_fraction=solid.slice_fraction)
                at = np.arange(0.005, dvh.max_gy + 0.02, 0.01)
                values = [v for c in dvh.vx_cc(at) for v in (0.01, float(c))]
            item = Dataset()
            ref = Dataset()
            ref.ReferencedROINumber = number
            item.DVHReferencedROISequence = pydicom.Sequence([ref])
            item.DVHType, item.DoseUnits, item.DoseType, item.DVHVolumeUnits = "CUMULATIVE", "GY", "PHYSICAL", "CM3"
            item.DVHDoseScaling, item.DVHNumberOfBins = 1.0, len(values) // 2
            item.DVHData = values
            ds = pydicom.dcmread(ws.dose)
            ds.DVHSequence = pydicom.Sequence([item])
            ds.save_as(d / "in" / "RD.dcm")
            return d / "in" / "RD.dcm"
        return make

    def own_dvh_met(ws, d, value):
        import json

        rows = {r["name"]: r for r in json.loads(value[0])["rois"]}
        p = rows["Heart"]["planning_system"]
        assert p is not None and p["max_volume_diff_pp"] < 0.01 and p["gamma_max"] < 0.01, p
        assert all(r["planning_system"] is None for n, r in rows.items() if n != "Heart")

    dose, rs = (lambda ws, d: ws.dose), (lambda ws, d: ws.rtstruct)
    return [
        cli_case(DVH, "dvh_compare_tps_without_planning_dvhs", dvh("--dose", dose, "--structures", rs,
                                                                   "--compare-tps"),
                 refused("no planning-system DVH", "no DVHSequence"), out=None),
        cli_case(DVH, "dvh_compare_tps_broken_dvhdata", dvh("--dose", with_planning_dvh([0.01, 5.0, 0.01]),
                                                            "--structures", rs, "--compare-tps"),
                 refused("DVHData of ROI", "3 values"), out=None),
        cli_case(DVH, "dvh_compare_tps_own_dvh", dvh("--dose", with_planning_dvh(), "--structures", rs,
                                                     "--supersample", "2", "--compare-tps"),
                 SAME, out=None, check=own_dvh_met, note="its own Heart DVH as the planning system's: met exactly"),
        cli_case(DVH, "dvh_roi_absent", dvh("--dose", dose, "--structures", rs, "--roi", "Nope"),
                 refused("not in RTSTRUCT", "Nope"), out=None),
        cli_case(DVH, "dvh_structures_missing", dvh("--dose", dose, "--structures", lambda ws, d: d / "in" / "RS.dcm"),
                 refused("RS.dcm"), out=None),
        cli_case(DVH, "dvh_dose_relative", dvh("--dose", relative, "--structures", rs), refused("RELATIVE"), out=None),
        cli_case(DVH, "dvh_rtdose_as_structures", dvh("--dose", dose, "--structures", dose),
                 refused("wrong modality"), out=None),
        cli_case(DVH, "dvh_structures_of_another_patient", dvh("--dose", dose, "--structures",
                                                               lambda ws, d: ws.other_rtstruct),
                 refused("FrameOfReferenceUID"), out=None),
        cli_case(DVH, "dvh_same_dose_file_twice", dvh("--dose", dose, dose, "--structures", rs),
                 refused("twice"), out=None, note="the dose was summed twice: every DVH doubled"),
        # whole voxels (--supersample 1): the clean case is the labelmap's DVH, which has no contours to sample
        cli_case(DVH, "dvh_one_roi", dvh("--dose", dose, "--structures", rs, "--roi", "Heart", "--supersample", "1"),
                 SAME, out=None, check=lambda ws, d, v: same_dvh(clean(ws), ["Heart"])(v)),
    ]


# --- features -------------------------------------------------------------------------------------------
def _settings_file(text, name="settings.yaml"):
    def make(ws, d):
        path = d / "in" / name
        path.write_text(text)
        return path
    return make


def features_cases():
    def argv(*extra, cache=False):
        return lambda ws, d: features_argv(ws.one, d / "out", ws.cache if cache else None,
                                           [x(ws, d) if callable(x) else x for x in extra])

    def same(ws, d, value):
        same_table(read_table(d / "out" / "table.csv"), ws.clean_table())
    return [
        cli_case(FEATURES, "features_workers_0", argv("--workers", "0"), refused("--workers")),
        cli_case(FEATURES, "features_settings_missing", argv("--settings", lambda ws, d: d / "in" / "s.yaml"),
                 refused("s.yaml")),
        cli_case(FEATURES, "features_settings_not_yaml", argv("--settings", _settings_file("profile: [fast\n")),
                 refused("settings.yaml")),
        cli_case(FEATURES, "features_settings_unknown_key", argv("--settings", _settings_file("profil: fast\n")),
                 refused("profil")),
        cli_case(FEATURES, "features_settings_alpha_beta_negative",
                 argv("--settings", _settings_file("alpha_beta: {Heart: -3}\n")), refused("alpha/beta")),
        cli_case(FEATURES, "features_settings_bed_levels_text",
                 argv("--settings", _settings_file("bed_levels_gy: [20, high]\n")), refused("bed_levels_gy")),
        cli_case(FEATURES, "features_settings_a_list", argv("--settings", _settings_file("- fast\n")),
                 refused("settings")),
        cli_case(FEATURES, "features_profile_unknown", argv("--profile", "quick"), refused("invalid choice")),
        cli_case(FEATURES, "features_settings_file_of_the_fast_profile",
                 argv("--settings", _settings_file("profile: fast\n"), cache=True), SAME, check=same),
    ]


# --- texture --------------------------------------------------------------------------------------------
def _clean_texture(ws):
    """heart.nrrd (the fraction-1 Heart mask on the dose grid) and the clean maps of `compass texture`."""
    def make():
        import SimpleITK as sitk

        images = _clean_images(ws)
        folder = ws.root / "clean" / "texture"
        folder.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(images["masks"]["Heart"], str(folder / "heart.nrrd"))
        ws.cli(["texture", "--image", images["dose"], "--mask", folder / "heart.nrrd", *TEXTURE_ARGS,
                "-o", folder / "maps"])
        return {"mask": folder / "heart.nrrd", "maps": _maps(folder / "maps")}
    return ws.memo("texture", make)


TEXTURE_ARGS = ["--bin-width", "0.5", "--features", "firstorder:Mean,glcm:Contrast"]


def _maps(folder):
    import SimpleITK as sitk

    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(Path(folder).glob("*.nrrd"))}


def _texture_same(ws, d, value):
    clean = _clean_texture(ws)["maps"]
    got = _maps(d / "out")
    assert sorted(got) == sorted(clean), f"maps {sorted(got)} != {sorted(clean)}"
    for k in clean:
        np.testing.assert_allclose(got[k], clean[k], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=k)


def texture_cases():
    def argv(image=None, mask=None, args=None, extra=()):
        def make(ws, d):
            clean = _clean_texture(ws)
            img = image(ws, d) if image else _clean_images(ws)["dose"]
            msk = mask(ws, d) if mask else clean["mask"]
            return ["texture", "--image", img, "--mask", msk, *(TEXTURE_ARGS if args is None else args), *extra,
                    "-o", d / "out"]
        return make

    def image_of(fn, name="image.nrrd"):
        def make(ws, d):
            import SimpleITK as sitk

            src = sitk.ReadImage(str(_clean_images(ws)["dose"]))
            out = fn(src, ws)
            sitk.WriteImage(out, str(d / "in" / name))
            return d / "in" / name
        return make

    def nan_inside(src, ws):
        import SimpleITK as sitk

        a = sitk.GetArrayFromImage(src)
        m = sitk.GetArrayFromImage(sitk.ReadImage(str(_clean_texture(ws)["mask"]))) > 0
        a[np.argwhere(m)[0][0], np.argwhere(m)[0][1], np.argwhere(m)[0][2]] = np.nan
        out = sitk.GetImageFromArray(a)
        out.CopyInformation(src)
        return out

    def mask_of(fn):
        def make(ws, d):
            import SimpleITK as sitk

            src = sitk.ReadImage(str(_clean_texture(ws)["mask"]))
            sitk.WriteImage(fn(src), str(d / "in" / "mask.nrrd"))
            return d / "in" / "mask.nrrd"
        return make

    def shifted(m):
        m = type(m)(m)
        m.SetOrigin(tuple(o + 1.0 for o in m.GetOrigin()))
        return m

    def emptied(m):
        return m * 0

    def scaled(m):
        import SimpleITK as sitk

        return sitk.Cast(m, sitk.sitkUInt8) * 255

    def flat(src, ws):
        import SimpleITK as sitk

        return sitk.GetImageFromArray(np.ones((6, 6), np.float32))

    return [
        cli_case(TEXTURE, "texture_radius_0", argv(extra=["--radius", "0"]), refused("radius")),
        cli_case(TEXTURE, "texture_radius_50", argv(extra=["--radius", "50"]),
                 refused("memory", "kernel radius 50", "COMPASS_MEMORY_LIMIT"),
                 note="asked the allocator for hundreds of GiB and died (the default limit, no option given)"),
        cli_case(TEXTURE, "texture_memory_limit_option", lambda ws, d: ["--memory-limit", "1M", *argv()(ws, d)],
                 refused("memory", "COMPASS_MEMORY_LIMIT=1M")),
        cli_case(TEXTURE, "texture_bin_width_0", argv(args=["--bin-width", "0"]), refused("bin width")),
        cli_case(TEXTURE, "texture_bin_width_nan", argv(args=["--bin-width", "nan"]), refused("bin width")),
        cli_case(TEXTURE, "texture_unknown_feature", argv(args=["--bin-width", "1", "--features", "glcm:Nope"]),
                 refused("unknown", "Nope")),
        cli_case(TEXTURE, "texture_unknown_device", argv(extra=["--device", "tpu"]), refused("device", "tpu")),
        cli_case(TEXTURE, "texture_image_missing", argv(image=lambda ws, d: d / "in" / "absent.nrrd"),
                 refused("cannot read image", "absent.nrrd")),
        cli_case(TEXTURE, "texture_mask_on_another_grid", argv(mask=mask_of(shifted)),
                 refused("not on the image's grid")),
        cli_case(TEXTURE, "texture_mask_empty", argv(mask=mask_of(emptied)), refused("mask is empty")),
        cli_case(TEXTURE, "texture_image_nan_inside_mask", argv(image=image_of(nan_inside)), refused("non-finite")),
        cli_case(TEXTURE, "texture_image_2d", argv(image=image_of(flat)), refused("3D")),
        cli_case(TEXTURE, "texture_image_as_nifti", argv(image=image_of(lambda src, ws: src, "image.nii.gz")), SAME,
                 check=_texture_same),
        cli_case(TEXTURE, "texture_mask_values_255", argv(mask=mask_of(scaled)), SAME, check=_texture_same),
        cli_case(TEXTURE, "texture_two_threads", argv(extra=["--threads", "2"]), SAME, check=_texture_same),
    ]


# --- run ------------------------------------------------------------------------------------------------
def _run_clean_check(ws, d, value):
    """The clean run: every output written, one risk row per patient x organ x fraction, risks in 0-1; it
    becomes the workspace's clean run (model, cache) for the cases after it."""
    import pandas as pd

    out = d / "out"
    for name in ("metrics.json", "risk.csv", "features.csv", "report.html", "model/model.json",
                 "model/weights.safetensors"):
        assert (out / name).is_file(), f"{name} missing"
    risk = pd.read_csv(out / "risk.csv")
    assert len(risk) == 9 and risk["risk"].between(0, 1).all(), f"risk.csv: {len(risk)} rows"
    ws._memo.setdefault("run", out)


def run_cases():
    def argv(manifest=None, extra=()):
        return lambda ws, d: ["run", manifest(ws, d) if manifest else ws.three, "-o", d / "out", *FAST,
                              *[x(ws, d) if callable(x) else x for x in extra]]

    def no_dose(ws, d):
        doc = ws.manifest_dict(ws.three)
        doc["patients"][2]["fractions"][0]["dose"] = []
        return ws.write_manifest(d / "in", doc)

    def settings(text):
        return lambda ws, d: (d / "in" / "s.yaml").write_text(text) and d / "in" / "s.yaml"
    return [
        cli_case(RUN, "run_three_patients", argv(), SAME, check=_run_clean_check),
        cli_case(RUN, "run_patient_without_dose", argv(no_dose), refused("at least 3 patients",
                                                                        "without a dose file")),
        cli_case(RUN, "run_settings_unknown_key", argv(extra=["--settings", settings("bin_width: 2\n")]),
                 refused("bin_width")),
        cli_case(RUN, "run_epochs_0", argv(extra=["--epochs", "0"]), refused("epochs")),
        cli_case(RUN, "run_bootstrap_negative", argv(extra=["--bootstrap", "-5"]), refused("bootstrap")),
        cli_case(RUN, "run_workers_0", argv(extra=["--workers", "0"]), refused("workers")),
        cli_case(RUN, "run_texture_fractions_text", lambda ws, d: ["run", ws.three, "-o", d / "out",
                                                                   "--texture-fractions", "one"],
                 refused("whole numbers")),
    ]


# --- update ---------------------------------------------------------------------------------------------
def _update_matches_risk_csv(ws, d, value):
    """The living twin after fraction 1 gives the final model's risk of fraction 1 in risk.csv."""
    import pandas as pd

    risk = pd.read_csv(ws.clean_run() / "risk.csv")
    lines = [line for line in value[0].splitlines() if " after fraction " in line]
    assert len(lines) == 3, lines
    for line in lines:
        pid, organ = line.split()[:2]
        got = float(line.split("risk ")[1].split()[0])
        want = float(risk[(risk.patient == pid) & (risk.organ == organ) & (risk.fraction == 1)]["risk"].iloc[0])
        assert abs(got - want) < 6e-4, f"{pid} {organ}: update {got}, risk.csv {want}"


def update_cases():
    return [
        cli_case(UPDATE, "update_one_patient", lambda ws, d: ["update", ws.clean_run() / "model", ws.one,
                                                              "--cache", ws.clean_run() / "cache"],
                 SAME, out=None, check=_update_matches_risk_csv),
        cli_case(UPDATE, "update_patient_folder_missing", lambda ws, d: ["update", ws.clean_run() / "model",
                                                                         d / "in" / "absent", "--cache", d / "out"],
                 refused("absent")),
        cli_case(UPDATE, "update_patient_folder_empty", lambda ws, d: ["update", ws.clean_run() / "model", d / "in",
                                                                       "--cache", d / "out"], refused("no DICOM")),
        cli_case(UPDATE, "update_workers_0", lambda ws, d: ["update", ws.clean_run() / "model", ws.one, "--cache",
                                                            d / "out", "--workers", "0"], refused("workers")),
    ]


# --- report ---------------------------------------------------------------------------------------------
def _run_copy(edit=None):
    def make(ws, d):
        out = d / "out"
        shutil.copytree(ws.clean_run(), out, ignore=shutil.ignore_patterns("cache"))
        if edit:
            edit(out)
        return ["report", out]
    return make


def _report_same(ws, d, value):
    import re

    def text(path):     # the report without its embedded images (PNG bytes carry matplotlib's metadata)
        return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "PNG", Path(path).read_text())
    assert text(d / "out" / "report.html") == text(ws.clean_run() / "report.html"), "report.html differs"


def report_cases():
    return [
        cli_case(REPORT, "report_regenerated", _run_copy(), SAME, check=_report_same),
        cli_case(REPORT, "report_without_metrics", _run_copy(lambda o: (o / "metrics.json").unlink()),
                 refused("metrics.json")),
        cli_case(REPORT, "report_metrics_not_json", _run_copy(lambda o: (o / "metrics.json").write_text("{")),
                 refused("metrics.json")),
        cli_case(REPORT, "report_without_risk_csv", _run_copy(lambda o: (o / "risk.csv").unlink()),
                 refused("risk.csv")),
        cli_case(REPORT, "report_risk_csv_garbage", _run_copy(lambda o: (o / "risk.csv").write_text("a,b\n1\n\"")),
                 refused("risk.csv")),
    ]


# --- batch ----------------------------------------------------------------------------------------------
def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _batch_provenance(ws, d, value):
    doc = json.loads((d / "out" / "batch_provenance.json").read_text())
    assert doc["inputs"]["risk.csv"] == _sha(ws.clean_run() / "risk.csv"), "risk.csv checksum"


def _batch_scores(ws, d, value):
    import pandas as pd

    got = pd.read_csv(d / "out" / "risk.csv").sort_values(["patient", "organ", "fraction"]).reset_index(drop=True)
    want = pd.read_csv(ws.clean_run() / "risk.csv").sort_values(["patient", "organ", "fraction"]).reset_index(drop=True)
    cols = ["patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning"]
    pd.testing.assert_frame_equal(got[cols], want[cols], rtol=1e-6, check_dtype=False)


def batch_cases():
    def argv(*extra, cohort=None):
        return lambda ws, d: ["--cohort", cohort(ws, d) if cohort else ws.three, "--out", d / "out",
                              *[x(ws, d) if callable(x) else x for x in extra]]
    risk = lambda ws, d: ws.clean_run() / "risk.csv"     # noqa: E731
    model = lambda ws, d: ws.clean_run() / "model"       # noqa: E731

    def bad_risk(ws, d):
        (d / "in" / "risk.csv").write_text("patient,organ,fraction\nSYN001,Heart,1\n")
        return d / "in" / "risk.csv"

    def bad_model(ws, d):
        shutil.copytree(ws.clean_run() / "model", d / "in" / "model")
        (d / "in" / "model" / "model.json").write_text((d / "in" / "model" / "model.json").read_text()
                                                       .replace("bed_", "BED_", 1))
        return d / "in" / "model"

    def under_file(ws, d):
        (d / "in" / "file.txt").write_text("mine\n")
        return ["--cohort", ws.three, "--out", d / "in" / "file.txt" / "out", "--risk", risk(ws, d), "--no-scenes"]
    return [
        cli_case(BATCH, "batch_cohort_missing", argv("--risk", risk, "--no-scenes",
                                                     cohort=lambda ws, d: d / "in" / "absent"),
                 refused("cohort manifest not found")),
        cli_case(BATCH, "batch_out_under_a_file", under_file, refused("is a file, not a folder"),
                 out=lambda d: d / "in" / "file.txt", note="was a NotADirectoryError traceback"),
        cli_case(BATCH, "batch_risk_missing", argv("--risk", lambda ws, d: d / "in" / "risk.csv", "--no-scenes"),
                 refused("risk")),
        cli_case(BATCH, "batch_risk_without_risk_column", argv("--risk", bad_risk, "--no-scenes"),
                 refused("lacks column")),
        cli_case(BATCH, "batch_unknown_patient", argv("--risk", risk, "--no-scenes", "--patients", "NOBODY"),
                 refused("NOBODY")),
        cli_case(BATCH, "batch_model_edited", argv("--model", bad_model, "--no-scenes", "--device", "cpu"),
                 refused("model.json")),
        cli_case(BATCH, "batch_bad_argument", argv("--profile", "quick"), refused("invalid choice", rc=1)),
        cli_case(BATCH, "batch_memory_limit_not_a_size", argv("--risk", risk, "--no-scenes", "--memory-limit", "lots"),
                 refused("memory limit", "lots")),
        cli_case(BATCH, "batch_target_sensitivity_with_a_model", argv("--model", model, "--no-scenes",
                                                                      "--target-sensitivity", "0.9"),
                 refused("a --model keeps its own")),
        cli_case(BATCH, "batch_target_sensitivity_not_a_share", argv("--target-sensitivity", "85"),
                 refused("between 0 and 1", rc=1)),
        cli_case(BATCH, "batch_risk_table_only", argv("--risk", risk, "--no-scenes"), SAME, check=_batch_provenance),
        cli_case(BATCH, "batch_model_scores_like_the_run", argv("--model", model, "--no-scenes", "--device", "cpu"),
                 SAME, check=_batch_scores),
    ]


def cases():
    """In the order they run: `compass run` first among the commands (its output is the clean run)."""
    return (scan_cases() + bed_cases() + dvh_cases() + features_cases() + texture_cases() + run_cases()
            + update_cases() + report_cases() + batch_cases())
