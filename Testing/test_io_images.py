"""NRRD/NIfTI images and labelmaps, Slicer colour tables and `.seg.nrrd` (one and several layers)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib.io import read_structures, read_volume
from COMPASSLib.io.images import read_image, read_masks


def _image(array, spacing=(1.0, 1.0, 2.0), origin=(-5.0, 3.0, 10.0)):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def test_pyradiomics_lung1_nrrd(shared_data):
    """A real NRRD (pyradiomics' lung1): read as float32, geometry as the file header says."""
    path = shared_data / "pyradiomics" / "data" / "lung1_image.nrrd"
    if not path.exists():
        pytest.skip(f"{path.name} not in this copy of the shared data")
    raw = sitk.ReadImage(str(path))
    image = read_volume([path], "ct")
    assert image.GetPixelID() == sitk.sitkFloat32
    assert image.GetOrigin() == raw.GetOrigin() and image.GetSpacing() == raw.GetSpacing()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(raw).astype(np.float32))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_read_image_formats_keep_lps_geometry(tmp_path, suffix):
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    source = _image(array)
    source.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    path = tmp_path / f"img{suffix}"
    sitk.WriteImage(source, str(path))
    image = read_image(path)
    assert image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(image.GetOrigin(), source.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), source.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)


def test_labelmap_with_colour_table(tmp_path):
    array = np.zeros((3, 4, 5), np.uint8)
    array[0, :2] = 1
    array[2, 3, 4] = 7
    sitk.WriteImage(_image(array), str(tmp_path / "organs.nii.gz"))
    (tmp_path / "organs.ctbl").write_text("# Color table file\n0 Background 0 0 0 0\n1 Heart 255 0 0 255\n"
                                          "7 SpinalCord 0 255 0 255\n")
    masks = read_masks(tmp_path / "organs.nii.gz")
    assert sorted(masks) == ["Heart", "SpinalCord"]
    assert sitk.GetArrayFromImage(masks["Heart"]).sum() == 10
    assert sitk.GetArrayFromImage(masks["SpinalCord"]).sum() == 1
    assert masks["Heart"].GetPixelID() == sitk.sitkUInt8


def test_labelmap_without_colour_table(tmp_path):
    array = np.zeros((2, 2, 2), np.uint16)
    array[1, 1, 1] = 3
    sitk.WriteImage(_image(array), str(tmp_path / "lab.nrrd"))
    assert list(read_masks(tmp_path / "lab.nrrd")) == ["label_3"]


def _write_seg_nrrd(path, layers_zyx, segments):
    """A `.seg.nrrd` written as Slicer does for overlapping segments: 4D, first axis kind 'list'
    (one component per layer), segment fields as key:=value lines."""
    data = np.stack(layers_zyx, axis=-1).astype(np.uint8)           # (z, y, x, layer)
    nz, ny, nx, nl = data.shape
    header = ["NRRD0004", "type: unsigned char", "dimension: 4", "space: left-posterior-superior",
              f"sizes: {nl} {nx} {ny} {nz}", "space directions: none (1.5,0,0) (0,1.5,0) (0,0,3)",
              "kinds: list domain domain domain", "endian: little", "encoding: raw",
              "space origin: (-10,-20,30)"]
    for i, (name, value, layer) in enumerate(segments):
        header += [f"Segment{i}_ID:=Segment_{i + 1}", f"Segment{i}_Name:={name}"]
        if value is not None:
            header += [f"Segment{i}_LabelValue:={value}", f"Segment{i}_Layer:={layer}"]
    path.write_bytes(("\n".join(header) + "\n\n").encode() + data.tobytes(order="C"))


def test_seg_nrrd_with_two_layers(tmp_path):
    layer0 = np.zeros((3, 4, 5), np.uint8)
    layer0[:, :2, :] = 1            # Lungs
    layer0[:, 3, 4] = 2             # SpinalCord
    layer1 = np.zeros_like(layer0)
    layer1[1, 1:3, 1:3] = 1         # GTV, overlapping the lung -> its own layer
    path = tmp_path / "plan.seg.nrrd"
    _write_seg_nrrd(path, [layer0, layer1], [("Lungs", 1, 0), ("SpinalCord", 2, 0), ("GTV", 1, 1)])
    masks = read_masks(path)
    assert list(masks) == ["Lungs", "SpinalCord", "GTV"]
    assert sitk.GetArrayFromImage(masks["Lungs"]).sum() == 3 * 2 * 5
    assert sitk.GetArrayFromImage(masks["SpinalCord"]).sum() == 3
    gtv = sitk.GetArrayFromImage(masks["GTV"])
    assert gtv.sum() == 4 and gtv[1, 1, 1] == 1
    assert masks["GTV"].GetOrigin() == pytest.approx((-10.0, -20.0, 30.0))
    assert masks["GTV"].GetSpacing() == pytest.approx((1.5, 1.5, 3.0))


def test_read_structures_resamples_labelmap_onto_reference(tmp_path):
    array = np.zeros((4, 8, 8), np.uint8)
    array[1:3, 2:6, 2:6] = 1
    sitk.WriteImage(_image(array, spacing=(2.0, 2.0, 2.0), origin=(0, 0, 0)), str(tmp_path / "m.nrrd"))
    # fine voxels nested in the coarse ones (coarse voxel i covers [2i - 1, 2i + 1] mm)
    reference = _image(np.zeros((8, 16, 16), np.float32), spacing=(1.0, 1.0, 1.0), origin=(-0.5, -0.5, -0.5))
    masks = read_structures(tmp_path / "m.nrrd", reference)
    out = masks["label_1"]
    assert out.GetSize() == reference.GetSize() and out.GetPixelID() == sitk.sitkUInt8
    # 2 x 4 x 4 coarse voxels of 8 mm^3 = 256 fine voxels; trilinear partial volume at the 8 outer
    # corners is 0.75^3 = 0.42 < 0.5, every other boundary voxel >= 0.5625: 256 - 8 are kept
    assert int(sitk.GetArrayFromImage(out).sum()) == 256 - 8


def test_seg_nrrd_before_slicer_4_11_one_segment_per_component(tmp_path):
    a = np.zeros((2, 3, 4), np.uint8)
    a[0, 0, :] = 1
    b = np.zeros_like(a)
    b[1, :, 0] = 1
    path = tmp_path / "old.seg.nrrd"
    _write_seg_nrrd(path, [a, b], [("Heart", None, None), ("Esophagus", None, None)])
    masks = read_masks(path)
    assert sitk.GetArrayFromImage(masks["Heart"]).sum() == 4
    assert sitk.GetArrayFromImage(masks["Esophagus"]).sum() == 3
