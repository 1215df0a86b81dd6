"""`compass synth --readout`: the hidden radiosensitivity shows on the PET (default) or on the CT instead,
the outcomes unchanged (the same hidden model and random streams), so a twin that only works because its
inputs were shaped after the PET rise fails on the CT variant (Testing/Benchmarks/bench_twin.py --readout ct)."""
from __future__ import annotations

import numpy as np
import pytest

from COMPASSLib.errors import InputError
from COMPASSLib.synth import draw_truth, generate_cohort, toxicity
from COMPASSLib.synth.anatomy import tissue_classes
from COMPASSLib.synth.cohort import scan_images
from COMPASSLib.synth.grid import block_mean, pet_factor
from COMPASSLib.synth.patient import simulate_patient
from COMPASSLib.synth.pet import ORGAN_CLASS


def _organ_means(sim, k, organ):
    hu, suv = scan_images(sim, k)
    mask = tissue_classes(sim.grid, sim.anatomy, sim.masks[k])[ORGAN_CLASS[organ]]
    pet_mask = block_mean(mask.astype(float), pet_factor(sim.size)) > 0.99
    return float(hu[mask].mean()), float(suv[pet_mask].mean())


def test_ct_readout_moves_the_signal_from_pet_to_ct():
    pet, ct = (simulate_patient(7, 1, 4, "small", readout) for readout in ("pet", "ct"))
    assert pet.outcomes == ct.outcomes                    # same hidden model, same draws
    organ = max(toxicity.ORGANS, key=lambda o: pet.signals[o]["pet_rise"])
    hu_p = [_organ_means(pet, k, organ)[0] for k in (1, 4)]
    hu_c, suv_c = zip(*[_organ_means(ct, k, organ) for k in (1, 4)])
    suv_p = [_organ_means(pet, k, organ)[1] for k in (1, 4)]
    rise_hu = ct.signals[organ]["ct_rise_hu"]
    assert rise_hu > 1.0
    assert hu_c[1] - hu_c[0] == pytest.approx(rise_hu, rel=0.2)      # the CT shows the inflammation ...
    assert abs(hu_p[1] - hu_p[0]) < 0.2 * rise_hu                     # ... which the PET readout's CT does not
    assert suv_p[1] / suv_p[0] - 1 > 0.5 * pet.signals[organ]["pet_rise"]
    assert abs(suv_c[1] / suv_c[0] - 1) < 0.3 * pet.signals[organ]["pet_rise"]   # the PET stays at baseline


def test_default_readout_is_unchanged_and_recorded_only_when_not_default(tmp_path):
    rows = draw_truth(patients=2, fractions=3, seed=4, size="small")
    assert rows == draw_truth(patients=2, fractions=3, seed=4, size="small", readout="pet")
    assert all("pet_rise" in r and "ct_rise_hu" not in r for r in rows)
    ct_rows = draw_truth(patients=2, fractions=3, seed=4, size="small", readout="ct")
    assert [r["probability"] for r in ct_rows] == [r["probability"] for r in rows]
    with pytest.raises(InputError, match="readout"):
        generate_cohort(tmp_path / "x", patients=1, fractions=1, size="small", readout="mri")
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
