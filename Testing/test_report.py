"""The HTML report reads like a clinical research report: a headline in sentences (no raw settings),
per-patient panels with warned organs first and highlighted, early warnings without NaN rows, the LKB
parameter sets as published, contributors in words, and a page that fits a laptop screen in a real
browser (headless Chromium). Built from a hand-made `compass run` folder whose numbers are known."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from COMPASSLib import report
from COMPASSLib.twin.explain import contributors_in_words, describe_feature, explanation_shares, family_of


def _metrics(n_patients=4):
    m = {k: {"value": v, "ci95": [v - 0.1, min(v + 0.1, 1.0)]} for k, v in
         (("auc", 0.812), ("sensitivity", 0.75), ("specificity", 0.7), ("brier", 0.151), ("lkb_auc", 0.604),
          ("mean_dose_auc", 0.655), ("calibration_slope", 0.93), ("calibration_intercept", 0.02))}
    m.update(n_trajectories=3 * n_patients, n_patients=n_patients, n_toxic=4,
             lead_time_fractions={"value": 2.0, "ci95": [1.0, 3.0], "statistic": "median"},
             per_fraction_auc=[{"fraction": k, "n": 12, "auc": 0.5 + 0.1 * k, "lkb_auc": 0.6, "mean_dose_auc": 0.6}
                               for k in (1, 2, 3)],
             calibration=[{"bin": [0.0, 0.2], "n": 5, "mean_predicted": 0.1, "observed_rate": 0.2},
                          {"bin": [0.8, 1.0], "n": 7, "mean_predicted": 0.85, "observed_rate": 0.71}],
             baselines={"geud_column": "dvh_eqd2_geud_gy", "geud_of": "eqd2", "mean_dose_column": "bed_mean_gy",
                        "parameter_sets": {"Heart": "burman1991_heart", "SpinalCord": "burman1991_spinal_cord"}},
             explanations={"n_toxic_trajectories": 4, "n_contributors": 12,
                           "share": {"pet_uptake": 0.5, "bed_dvh": 0.25, "ct_radiomics": 0.25},
                           "families": {"pet_uptake": "PET uptake and its change", "bed_dvh": "BED / dose-volume",
                                        "ct_radiomics": "CT radiomics"}},
             provenance={"created": "2026-12-02T00:00:00+00:00", "versions": {"COMPASSLib": "0.1.0"},
                         "settings": {"twin": {"epochs": 10}}})
    return m


def _write_run(out, n_patients=4, ids=None, cohort=None):
    out.mkdir()
    rows, traj = [], []
    for i in range(n_patients):
        p = ids[i] if ids else f"P{i:02d}"
        for organ in ("Esophagus", "Heart", "SpinalCord"):
            warned_at = 2 if (i, organ) in ((0, "Heart"), (1, "SpinalCord"), (2, "Heart")) else None
            toxic = (i, organ) in ((0, "Heart"), (1, "SpinalCord"), (3, "Esophagus"), (3, "Heart"))
            for k in (1, 2, 3):
                risk = 0.2 + (0.25 * k if warned_at else 0.0)
                rows.append(dict(patient=p, organ=organ, fraction=k, risk=risk, ci_low=risk - 0.1, ci_high=risk + 0.1,
                                 warning=bool(warned_at and k >= warned_at),
                                 top_features="pet_suv_mean@F3:+0.412; bed_mean_gy@F2:+0.2; ct_glcm_Contrast@F1:-0.05",
                                 threshold=0.5, lopo_risk=risk))
            traj.append(dict(patient=p, organ=organ, label=int(toxic), onset_fraction=3.0 if toxic else float("nan"),
                             warning_fraction=float(warned_at) if warned_at else float("nan"),
                             lead_time=(3.0 - warned_at) if toxic and warned_at else float("nan"),
                             risk=0.95 if warned_at else 0.2, lkb_ntcp=0.3, mean_dose_risk=0.4))
    pd.DataFrame(rows).to_csv(out / "risk.csv", index=False)
    pd.DataFrame(rows).drop(columns=["lopo_risk", "top_features"]).to_csv(out / "lopo_risk.csv", index=False)
    pd.DataFrame(traj).to_csv(out / "lopo_trajectories.csv", index=False)
    (out / "metrics.json").write_text(json.dumps({**_metrics(n_patients), "cohort": cohort}))
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = _write_run(tmp_path_factory.mktemp("report") / "run")
    report.write_report(out)
    return out, (out / "report.html").read_text()


def _text(html_doc):
    """The visible text: no embedded images, no tags."""
    return re.sub(r"<[^>]+>", " ", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html_doc))


def test_headline_says_the_result_in_sentences(page):
    _, doc = page
    head = _text(doc.split("<h2>Patients")[0])
    assert "AUC of 0.81 (95 % CI 0.71–0.91)" in " ".join(head.split())
    assert "0.60 (0.50–0.70) for the LKB NTCP model" in " ".join(head.split())
    assert "It warned for 2 of 4 toxic trajectories, a median of 2.0 fractions before onset" in " ".join(head.split())
    assert "1 of 8" in head                        # false alarms: P02 Heart warned without toxicity
    assert "calibration slope 0.93" in head
    assert "{'" not in doc and "{&#x27;" not in doc   # no raw Python dicts


def test_no_nan_in_the_tables(page):
    _, doc = page
    text = _text(doc)
    assert not re.search(r"\bnan\b|\bNaN\b", text)
    assert "never warned" in text and "onset not recorded" not in text


def test_warned_patients_first_and_highlighted(page):
    _, doc = page
    ids = re.findall(r"<section class='panel[^']*' id='patient-([^']+)'", doc)
    assert ids[:3] == ["P00", "P01", "P02"] and set(ids) == {"P00", "P01", "P02", "P03"}
    assert doc.count("<section class='panel warned'") == 3
    p00 = doc.split("id='patient-P00'")[1].split("</section>")[0]
    assert "Heart (warned after fraction 2)" in p00
    assert "mean PET SUV (fraction 3) raises the risk, +0.41 log-odds" in p00


def test_lkb_parameters_as_published(page):
    """Burman 1991 (Int J Radiat Oncol Biol Phys 21:123): heart pericarditis TD50 48 Gy, m 0.10, n 0.35;
    spinal cord TD50 66.5 Gy, m 0.175, n 0.05."""
    _, doc = page
    lkb = doc.split("Population baseline")[1]
    assert "<td>Heart</td><td>burman1991_heart</td><td class='num'>48</td><td class='num'>0.1</td>" \
           "<td class='num'>0.35</td>" in lkb
    assert "<td class='num'>66.5</td><td class='num'>0.175</td><td class='num'>0.05</td>" in lkb


def test_report_regenerates_byte_identical(page):
    out, doc = page
    assert report.render(out) == doc


def test_large_cohorts_show_panels_of_warned_or_toxic_patients_only(tmp_path, monkeypatch):
    out = _write_run(tmp_path / "run", n_patients=6)
    monkeypatch.setattr(report, "MAX_PANELS", 3)
    ids = re.findall(r"id='patient-([^']+)'", report.render(out))
    assert ids == ["P00", "P01", "P02", "P03"]       # P04, P05: neither warned nor toxic


def test_contributors_in_words_and_families():
    assert contributors_in_words("pet_delta_firstorder_Mean@F4:-0.3") == [
        "PET first-order Mean, change since the first fraction (fraction 4) lowers the risk, -0.30 log-odds"]
    assert describe_feature("tex_glcm_Contrast_p90") == "BED texture map GLCM Contrast p90"
    assert [family_of(c) for c in ("pet_suv_peak", "pet_glcm_Imc1", "bed_inc_max_gy", "tex_glcm_Contrast_mean",
                                   "ct_delta_glcm_Correlation", "shape_Sphericity", "clin_age")] == [
        "pet_uptake", "pet_texture", "bed_dvh", "dose_texture", "ct_radiomics", "shape", "clinical"]
    assert contributors_in_words(None) == [] and contributors_in_words("garbage") == []


def test_explanation_shares_count_toxic_trajectories_only():
    risk = pd.DataFrame([dict(patient="A", organ="Heart", fraction=2, top_features="pet_suv_mean@F2:+1; ct_glcm_Contrast@F1:+0.5"),
                         dict(patient="A", organ="Heart", fraction=1, top_features="shape_Sphericity@F1:+1"),
                         dict(patient="B", organ="Heart", fraction=2, top_features="ct_glcm_Contrast@F2:+1")])
    labels = pd.DataFrame(dict(patient=["A", "B"], organ=["Heart", "Heart"], label=[1, 0]))
    s = explanation_shares(risk, labels)
    assert s["n_toxic_trajectories"] == 1 and s["n_contributors"] == 2
    assert s["share"]["pet_uptake"] == 0.5 and s["share"]["ct_radiomics"] == 0.5 and s["share"]["shape"] == 0
    assert s["pet_response_and_bed_share"] == 0.5 and s["share_first"]["pet_uptake"] == 1.0


def test_warned_organs_shown_in_slices_rendered_by_slicer(small_cohort, tmp_path):
    """With images on, each warned organ of the real synthetic patients gets its axial and coronal slice
    with the cumulative BED, rendered by Slicer's slice views from the cohort's DICOM (mrml.render)."""
    pytest.importorskip("slicer")
    out = _write_run(tmp_path / "run", n_patients=3, ids=["SYN001", "SYN002", "SYN003"],
                     cohort=str(small_cohort.parent))
    doc = report.render(out, images=True)
    shown = re.findall(r"<img alt='(SYN\d+ \w+): (axial|coronal) slice through the organ centre, cumulative BED "
                       r"after fraction 3' src='data:image/png;base64,", doc)
    assert shown == [("SYN001 Heart", "axial"), ("SYN001 Heart", "coronal"), ("SYN002 SpinalCord", "axial"),
                     ("SYN002 SpinalCord", "coronal"), ("SYN003 Heart", "axial"), ("SYN003 Heart", "coronal")]
    assert "slice through" not in report.render(out, images=False)


def test_warned_organ_shows_its_spared_projection(tmp_path):
    out = _write_run(tmp_path / "run")
    rows = []
    for scenario, risk3, bed3 in (("as_planned", 0.95, 30.0), ("Heart=0.7", 0.8, 24.5)):
        for organ in ("Heart", "Esophagus"):
            for k in (1, 2, 3):
                r = 0.45 if k == 2 else (0.2 if k == 1 else (risk3 if organ == "Heart" else 0.2))
                rows.append(dict(scenario=scenario, patient="P00", organ=organ, fraction=k, delivered=k <= 2,
                                 bed_mean_gy=10.0 * k if k < 3 else bed3, eqd2_mean_gy=8.0 * k, risk=r,
                                 ci_low=r - 0.1, ci_high=min(r + 0.04, 1.0), lkb_ntcp=0.1, after=2))
    pd.DataFrame(rows).to_csv(out / "whatif_warned.csv", index=False)
    p00 = report.render(out).split("id='patient-P00'")[1].split("</section>")[0]
    assert "<img alt='what if for P00'" in p00
    assert ("Heart: as planned 0.95 (0.85–0.99) after fraction 3; with its remaining dose × 0.7: 0.80 (0.70–0.84), "
            "mean BED 30.0 → 24.5 Gy") in " ".join(_text(p00).split())
    # with the change against as planned and its paired interval (twin.whatif writes them since 4 Dec 2026)
    frame = pd.DataFrame(rows).assign(change=0.0, change_low=0.0, change_high=0.0)
    spared = (frame["scenario"] == "Heart=0.7") & (frame["organ"] == "Heart") & (frame["fraction"] == 3)
    frame.loc[spared, ["change", "change_low", "change_high"]] = [-0.15, -0.22, -0.08]
    frame.to_csv(out / "whatif_warned.csv", index=False)
    p00 = report.render(out).split("id='patient-P00'")[1].split("</section>")[0]
    assert ("with its remaining dose × 0.7: 0.80 (0.70–0.84), change -0.15 (-0.22 to -0.08), mean BED 30.0 → 24.5 Gy"
            in " ".join(_text(p00).split()))
    (out / "whatif_warned.csv").write_text("scenario,patient\nx,P00\n")
    with pytest.raises(report.InputError, match="whatif_warned.csv lacks column"):
        report.render(out)


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (make venv installs it for CI)")
def test_fits_a_laptop_screen_in_headless_chromium(page, tmp_path):
    """The page laid out by a real browser at 1366 px: the document is no wider than the window
    (--dump-dom after a script that writes the widths into the page)."""
    out, doc = page
    probe = tmp_path / "probe.html"
    probe.write_text(doc.replace("</body>", "<script>document.body.setAttribute('data-widths', "
                                 "document.documentElement.scrollWidth + ' ' + window.innerWidth)</script></body>"))
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1366,900", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    widths = re.search(r'data-widths="(\d+) (\d+)"', res.stdout)
    assert widths, res.stderr[-2000:]
    scroll, window = map(int, widths.groups())
    assert window == 1366 and scroll <= window, f"horizontal overflow: content {scroll} px in a {window} px window"
