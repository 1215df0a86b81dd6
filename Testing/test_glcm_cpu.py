"""The compiled CPU steps of the GLCM maps (COMPASSLib.features._glcm_cpu).

Distinct cells: per row, the distinct unordered level pairs and their counts, against numpy's
unique on random rows with invalid entries.

MCC: the compiled solver against an independent reference: numpy's
LAPACK eigvalsh on the whole normalised GLCM T = D^-1/2 P D^-1/2 of each matrix (no deflation),
MCC = max(|lowest|, |second highest|) eigenvalue. On the pair lists of real texture-map kernels
(radius 1 to 3, ~10 to ~100 grey levels) and on graphs with known spectra: complete graphs (an
(n-1)-fold eigenvalue), odd and even cycles, disconnected and bipartite graphs (MCC 1), one and two
levels. Equality of whole maps with pyradiomics, by both solvers, is in test_texture_maps.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

from COMPASSLib.features import _glcm_cpu
from COMPASSLib.features.texture_maps import texture_maps

TOL = 1e-13


def reference_mcc(rows, cols, valid, nlev):
    out = np.empty(len(rows))
    for k, (r, c, v) in enumerate(zip(rows, cols, valid)):
        levels = np.unique(np.concatenate([r[v], c[v]]))
        assert len(levels) == nlev[k]
        if len(levels) < 2:
            out[k] = 0.0
            continue
        a = np.searchsorted(levels, r[v])
        b = np.searchsorted(levels, c[v])
        P = np.zeros((len(levels), len(levels)))
        np.add.at(P, (a, b), 1.0)
        np.add.at(P, (b, a), 1.0)
        s = P.sum(1)
        ev = np.linalg.eigvalsh(P / np.sqrt(np.outer(s, s)))
        out[k] = max(abs(ev[0]), abs(ev[-2]))
    return out


def graph(edges, pad=0, junk=7):
    """One matrix's pair list from level pairs, with `pad` invalid entries holding junk levels."""
    rows = np.array([a for a, _ in edges] + [junk] * pad, dtype=np.int64)
    cols = np.array([b for _, b in edges] + [junk] * pad, dtype=np.int64)
    valid = np.array([True] * len(edges) + [False] * pad)
    return rows, cols, valid, len({x for e in edges for x in e})


def solve(graphs, unit=None):
    pairs = max(len(g[0]) for g in graphs)
    rows = np.zeros((len(graphs), pairs), dtype=np.int64)
    cols = np.zeros_like(rows)
    valid = np.zeros(rows.shape, dtype=bool)
    for k, (r, c, v, _) in enumerate(graphs):
        rows[k, :len(r)], cols[k, :len(c)], valid[k, :len(v)] = r, c, v
    nlev = np.array([g[3] for g in graphs], dtype=np.int64)
    unit = np.zeros(len(graphs), dtype=bool) if unit is None else np.asarray(unit)
    width = int(max(rows.max(), cols.max())) + 1
    return _glcm_cpu.mcc(rows, cols, valid, nlev, unit, width), (rows, cols, valid, nlev)


def test_numba_is_installed_and_used_on_the_cpu():
    assert _glcm_cpu.available(), "numba is a pinned requirement (requirements.txt)"


def test_graphs_with_known_spectra():
    cases = []
    for n in (3, 4, 5, 9, 20):
        complete = [(i, j) for i in range(n) for j in range(i + 1, n)]
        cases.append((graph(complete), 1 / (n - 1)))                        # eigenvalue -1/(n-1), n-1 times
        cases.append((graph(complete + [(i, i) for i in range(n)]), 1 / (n + 1)))   # (J + I) / (n + 1)
    for n in (3, 5, 7, 11, 25):
        cases.append((graph([(i, (i + 1) % n) for i in range(n)]), math.cos(math.pi / n)))  # odd cycle
    for n in (4, 6, 10, 30):
        cases.append((graph([(i, (i + 1) % n) for i in range(n)], pad=3), 1.0))  # even cycle: bipartite
    triangle = [(0, 1), (1, 2), (2, 0), (0, 0)]
    cases.append((graph(triangle + [(a + 3, b + 3) for a, b in triangle]), 1.0))   # disconnected
    cases.append((graph([(5, 5), (5, 5), (8, 8)]), 1.0))                 # two levels, never paired
    cases.append((graph([(5, 5), (5, 8), (8, 8)]), abs(2 / 3 + 2 / 3 - 1)))  # T = [[2/3, 1/3], [1/3, 2/3]]
    cases.append((graph([(4, 4), (4, 4)], pad=2), 0.0))                  # one level
    got, arrays = solve([c[0] for c in cases])
    want = np.array([c[1] for c in cases])
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    np.testing.assert_allclose(got, reference_mcc(*arrays), rtol=0, atol=TOL)
    # a kernel spanning hundreds of levels (fewer lanes there: bounded scratch memory)
    n = 601
    big, _ = solve([graph([(i, (i + 1) % n) for i in range(n)])])
    assert abs(big[0] - math.cos(math.pi / n)) < TOL
    # known from the pair graph: 1 without a solve
    flagged, _ = solve([cases[0][0], cases[1][0]], unit=[True, False])
    assert flagged[0] == 1.0 and abs(flagged[1] - cases[1][1]) < TOL


@pytest.mark.parametrize("radius,levels", [(1, 40), (2, 12), (2, 40), (2, 100), (3, 30)])
def test_real_kernels_equal_lapack(monkeypatch, radius, levels):
    """Every matrix of a texture map (a noisy dose field, as MC dose is) solved by the compiled
    loop equals numpy's LAPACK on the undeflated matrix; values in lanes do not depend on which
    matrices share their lanes (the same matrix solved alone gives the same bits)."""
    rng = np.random.default_rng(radius * 1000 + levels)
    z, y, x = np.mgrid[:9, :10, :11]
    dose = 30 * np.exp(-((z - 4) ** 2 + (y - 5) ** 2 + (x - 4) ** 2) / 30) + rng.normal(0, 0.6, z.shape)
    organ = ((z - 4) / 4) ** 2 + ((y - 4.5) / 4.5) ** 2 + ((x - 5) / 5) ** 2 < 1
    width = float(np.ptp(dose[organ]) / (levels - 0.5))
    calls = []
    real = _glcm_cpu.mcc

    def spy(*args):
        out = real(*args)
        calls.append((args, out))
        return out

    monkeypatch.setattr(_glcm_cpu, "mcc", spy)
    texture_maps(dose, organ, ["glcm:MCC", "glcm:JointEntropy"], radius=radius, bin_width=width, threads=1)
    assert calls
    for (rows, cols, valid, nlev, unit, w), out in calls:
        ref = reference_mcc(rows, cols, valid, nlev)
        np.testing.assert_allclose(out, ref, rtol=0, atol=TOL)
        assert np.all(out[unit] == 1.0)
        some = np.flatnonzero(nlev > 4)[:50]
        alone = np.array([real(rows[k:k + 1], cols[k:k + 1], valid[k:k + 1], nlev[k:k + 1], unit[k:k + 1], w)[0]
                          for k in some])
        assert np.array_equal(alone, out[some])


def test_distinct_cells_equal_numpy_unique():
    rng = np.random.default_rng(5)
    width = 23
    a = rng.integers(0, width, (400, 60))
    b = np.clip(a + rng.integers(-4, 5, a.shape), 0, width - 1)
    b[:50] = a[:50]                                            # rows of diagonal pairs only
    valid = rng.random(a.shape) > 0.2
    valid[7] = False                                           # a row without pairs
    counts, diag = _glcm_cpu.distinct_cells(a, b, valid, width)
    assert counts.shape == diag.shape and counts.shape[0] == len(a)
    for r in range(len(a)):
        lo, hi = np.minimum(a[r], b[r])[valid[r]], np.maximum(a[r], b[r])[valid[r]]
        cells, n = np.unique(lo * width + hi, return_counts=True)
        k = len(cells)
        assert (counts[r, k:] == 0).all() and not diag[r, k:].any()
        # the same multiset of (count, diagonal) cells, whatever their order
        got = sorted(zip(counts[r, :k].tolist(), diag[r, :k].tolist()))
        want = sorted(zip(n.tolist(), (cells // width == cells % width).tolist()))
        assert got == want, r
    assert counts.shape[1] == max(len(np.unique((np.minimum(a[r], b[r]) * width + np.maximum(a[r], b[r]))[valid[r]]))
                                  for r in range(len(a)))


def test_compiled_loops_cache_in_the_users_folder_when_the_package_is_read_only(tmp_path):
    """An installed extension may sit in a read-only folder (macOS app bundle, shared Windows install):
    numba's cache then goes to the user's cache folder, and the compiled loops still work from it. Run
    in a fresh interpreter where the package folder reads as not writable (this machine runs as root,
    for whom every folder is writable, so the test says so through os.access)."""
    import os
    import subprocess
    import sys

    code = (
        "import os\n"
        "real = os.access\n"
        "os.access = lambda path, mode, **kw: False if mode == os.W_OK and 'features' in str(path) else real(path, mode, **kw)\n"
        "import numpy as np\n"
        "from COMPASSLib.features import _glcm_cpu as g\n"
        "print(os.environ['NUMBA_CACHE_DIR'])\n"
        "a = np.array([[0, 1], [1, 2]]); print(g.distinct_cells(a, a[:, ::-1].copy(), np.ones((2, 2), bool), 3)[0].tolist())\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == str(tmp_path / "COMPASS" / "numba")
    assert any((tmp_path / "COMPASS" / "numba").rglob("*.nbi")), "numba wrote no cache index there"
    # where the user (or the Slicer module) chose a folder, it is kept
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "chosen")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.splitlines()[0] == str(tmp_path / "chosen")
