"""Which features (and fractions) drive the risk after fraction k: integrated gradients of the
classifier's logit through the encoder, with respect to the standardised inputs of fractions 1..k.

The baseline is the all-zero input (the training mean of every feature) with the organ code kept, so
the attributions of one state add up to logit(risk) - logit(risk of an average trajectory of that
organ) (IG's completeness, up to the Riemann sum's error). A feature's contribution is the sum over
fractions; the fraction shown beside it is the one contributing most to it.
"""
from __future__ import annotations

import numpy as np


def integrated_gradients(ae, clf, x, onehot, steps=16, chunk=256):
    """Attributions (N, T_k, T_j, F): of the logit after step k to input step j, feature f."""
    import torch

    n_latent = ae.to_latent.out_features
    w = torch.as_tensor(clf.coef_[:n_latent] / clf.std_[:n_latent], dtype=torch.float32)
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps   # midpoint rule
    N, T, F = x.shape
    out = np.zeros((N, T, T, F), dtype=np.float32)
    for s in range(0, N, chunk):
        xb = torch.as_tensor(x[s:s + chunk])
        ob = torch.as_tensor(onehot[s:s + chunk], dtype=torch.float32)
        n = len(xb)
        xi = (alphas[:, None, None, None] * xb[None]).reshape(steps * n, T, F).requires_grad_(True)
        logit = ae.encode(xi, ob.repeat(steps, 1)) @ w          # (S*n, T); the organ part is constant
        for k in range(T):
            (g,) = torch.autograd.grad(logit[:, k].sum(), xi, retain_graph=k < T - 1)
            out[s:s + n, k] = (xb * g.reshape(steps, n, T, F).mean(0)).detach().numpy()
    return out


def top_contributors(ae, clf, x, onehot, lengths, fractions, columns, steps=16, top_k=3):
    """{(trajectory i, step k): 'feature@F<fraction>:+0.123; ...'} (logit units, largest |value| first)."""
    ig = integrated_gradients(ae, clf, x, onehot, steps)
    tops = {}
    for i in range(len(x)):
        for k in range(int(lengths[i])):
            a = ig[i, k, : k + 1]                  # (fractions 1..k, F): causal, later steps get 0
            total = a.sum(axis=0)
            order = np.argsort(-np.abs(total), kind="stable")[:top_k]
            tops[(i, k)] = "; ".join(
                f"{columns[f]}@F{int(fractions[i, int(np.argmax(np.abs(a[:, f])))])}:{total[f]:+.3f}"
                for f in order)
    return tops


# --- contributors in words, and which kind of feature they are ------------------------------------
# Families a physicist reasons in. Order matters: the first matching prefix wins (pet_suv_ before pet_).
# PET texture counts as PET response: the inflamed organ's uptake rises voxel by voxel with the BED it
# received, so the uptake's spatial pattern (GLCM correlation, ...) changes with it; CT radiomics and
# shape carry no response where the PET shows it (the synthetic cohort's default readout).
FAMILIES = (
    ("pet_uptake", "PET uptake and its change", ("pet_suv_", "pet_delta_firstorder_", "pet_firstorder_")),
    ("pet_texture", "PET uptake pattern (texture)", ("pet_",)),
    ("bed_dvh", "BED / dose-volume", ("bed_", "dvh_")),
    ("dose_texture", "BED texture (dosiomics)", ("dose_", "tex_")),
    ("ct_radiomics", "CT radiomics", ("ct_",)),
    ("shape", "organ shape", ("shape_",)),
    ("clinical", "clinical", ("clin_",)),
)
RESPONSE_AND_DOSE = ("pet_uptake", "pet_texture", "bed_dvh", "dose_texture")
_LABEL = {key: label for key, label, _ in FAMILIES}

_WORDS = {   # the columns a report reader meets most, said plainly
    "pet_suv_mean": "mean PET SUV", "pet_suv_max": "maximum PET SUV", "pet_suv_peak": "PET SUVpeak",
    "bed_mean_gy": "mean cumulative BED", "bed_max_gy": "maximum cumulative BED",
    "bed_geud_gy": "gEUD of the cumulative BED", "bed_d2cc_gy": "BED D2cc", "bed_d0_1cc_gy": "BED D0.1cc",
    "dvh_dose_mean_gy": "mean cumulative physical dose", "dvh_eqd2_mean_gy": "mean cumulative EQD2",
    "dvh_volume_cc": "organ volume",
}


def family_of(column: str) -> str:
    for key, _, prefixes in FAMILIES:
        if column.startswith(prefixes):
            return key
    return "other"


def describe_feature(column: str) -> str:
    """'pet_delta_firstorder_Mean' -> 'PET first-order Mean, change since the first fraction'."""
    if column in _WORDS:
        return _WORDS[column]
    for prefix, what in (("pet_delta_", "PET"), ("ct_delta_", "CT")):
        if column.startswith(prefix):
            return f"{what} {_split(column[len(prefix):])}, change since the first fraction"
    for prefix, what in (("tex_", "BED texture map"), ("dose_", "BED radiomics"), ("ct_", "CT"),
                         ("pet_", "PET"), ("bed_", "BED"), ("dvh_", "DVH"), ("shape_", "shape"),
                         ("clin_", "clinical")):
        if column.startswith(prefix):
            return f"{what} {_split(column[len(prefix):])}"
    return column


def _split(rest: str) -> str:
    cls, _, name = rest.partition("_")
    cls = {"firstorder": "first-order", "glcm": "GLCM", "glrlm": "GLRLM", "glszm": "GLSZM",
           "gldm": "GLDM", "ngtdm": "NGTDM"}.get(cls, cls)
    return f"{cls} {name.replace('_', ' ')}".strip()


def parse_contributors(text) -> list:
    """The `top_features` text of risk.csv -> [(column, fraction, logit contribution), ...]."""
    out = []
    if not isinstance(text, str):
        return out
    for part in text.split(";"):
        head, _, value = part.strip().rpartition(":")
        column, _, fx = head.partition("@F")
        try:
            out.append((column, int(fx), float(value)))
        except ValueError:
            continue
    return out


def contributors_in_words(text) -> list:
    """['mean PET SUV (fraction 5) raises the risk, +0.41 log-odds', ...] from risk.csv's top_features."""
    return [f"{describe_feature(c)} (fraction {fx}) {'raises' if v > 0 else 'lowers'} the risk, "
            f"{v:+.2f} log-odds" for c, fx, v in parse_contributors(text)]


def explanation_shares(risk, labels) -> dict:
    """How often each feature family is among the top contributors of the toxic trajectories after their
    last fraction (risk: risk.csv rows with top_features; labels: patient, organ, label). A twin that
    learnt the organ's response should name the PET response and the BED it follows more often than
    CT radiomics and shape, which on the synthetic cohort's default (PET) readout carry noise only
    (docs/twin.md)."""
    last = risk.sort_values("fraction").groupby(["patient", "organ"], sort=False).tail(1)
    toxic = last.merge(labels[labels["label"] == 1][["patient", "organ"]], on=["patient", "organ"])
    counts = {key: 0 for key, _, _ in FAMILIES}
    counts["other"] = 0
    first = dict(counts)
    for text in toxic["top_features"]:
        items = parse_contributors(text)
        for i, (column, _, _) in enumerate(items):
            counts[family_of(column)] += 1
            if i == 0:
                first[family_of(column)] += 1
    total, n = sum(counts.values()), len(toxic)
    signal = sum(counts[k] for k in RESPONSE_AND_DOSE)
    noise = counts["ct_radiomics"] + counts["shape"]
    return {"n_toxic_trajectories": int(n), "n_contributors": int(total),
            "share": {k: (v / total if total else None) for k, v in counts.items()},
            "share_first": {k: (v / n if n else None) for k, v in first.items()},
            "pet_response_and_bed_share": signal / total if total else None,
            "ct_radiomics_and_shape_share": noise / total if total else None,
            "families": {k: _LABEL.get(k, "other") for k in counts},
            "statistic": "share of the top contributors (all ranks; share_first: rank 1 only) of toxic "
                         "trajectories after their last fraction, final twin"}
