"""Render Resources/Screenshots/ from a real scene: a synthetic cohort through `compass run` (fast profile),
the scene of its first patient built as the Slicer module and batch mode build it, then
  COMPASS-2.png  the axial, sagittal and coronal slice views (CT + cumulative BED) and the 3D view of
                 the organ surfaces, rendered offscreen by Slicer's own view code (COMPASSLib/mrml/render.py);
  COMPASS-3.png  `compass view` in headless Debian Chromium (Playwright), the page a physicist opens.
COMPASS-1.png (the catalogue's first screenshot) is left as it is.

    .venv/bin/python Testing/make_screenshots.py [--out RUN_DIR] [--patient SYN001]

With --out an existing `compass run` folder is used (its cohort from metrics.json); otherwise a cohort of
3 patients x 5 fractions is made and run in a temporary folder (about two minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "Resources" / "Screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def compass(*args) -> None:
    subprocess.run([sys.executable, "-m", "COMPASSLib", *map(str, args)], check=True, cwd=REPO)


def make_run(tmp: Path) -> Path:
    compass("synth", tmp / "cohort", "--patients", 3, "--fractions", 5, "--seed", 11, "--size", "small")
    out = tmp / "run"
    compass("run", tmp / "cohort", "-o", out, "--profile", "fast", "--epochs", 30, "--bootstrap", 20,
            "--texture-maps", "Heart")
    return out


def offscreen_views(out: Path, patient: str, path: Path, size=(480, 480)) -> None:
    """The four views side by side (2 x 2) with captions, one PNG."""
    from PIL import Image, ImageDraw, ImageFont

    from COMPASSLib.atomic import read_json
    from COMPASSLib.mrml import render

    cohort = read_json(out / "metrics.json", "run metrics").get("cohort")
    found = render.open_patient(out, patient, cohort)
    found.show_fraction(found.fractions[-1])
    views = render.PatientViews(found, size)
    views.show_overlay("bed")
    views.through("Heart")
    tiles = [(f"{name} through the heart: CT + cumulative BED after fraction {found.fraction}", v.rgb())
             for name, v in views.slices.items()]
    tiles.append(("3D: organ surfaces (segmentation closed surfaces), from the front", views.threed.rgb()))
    w, h = size
    sheet = Image.new("RGB", (2 * w + 12, 2 * (h + 22) + 8), (30, 30, 32))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    for i, (caption, rgb) in enumerate(tiles):
        x, y = 4 + (i % 2) * (w + 4), 4 + (i // 2) * (h + 26)
        draw.text((x + 2, y + 4), caption, fill=(225, 225, 225), font=font)
        sheet.paste(Image.fromarray(rgb), (x, y + 22))
    write_png(sheet, path)


def browser_view(out: Path, patient: str, path: Path) -> None:
    """`compass view` served on a free local port, photographed by headless Chromium, then stopped."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "COMPASSLib", "view", str(out), "--patient", patient,
                             "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("compass view did not start")
            time.sleep(0.3)
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            browser = p.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium",
                                                           args=CHROMIUM_ARGS, viewport={"width": 1440, "height": 900})
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            for name in ("axial", "sagittal", "coronal", "3d"):
                page.wait_for_selector(f"#area-{name} img", timeout=60_000)
            page.wait_for_selector("#risk-table td", timeout=60_000)
            time.sleep(2)   # the last frames
            from io import BytesIO

            from PIL import Image

            write_png(Image.open(BytesIO(page.screenshot(full_page=True))).convert("RGB"), path)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def write_png(image, path: Path) -> None:
    from COMPASSLib.atomic import atomic_path

    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size // 1024} KiB)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="an existing `compass run` output folder")
    p.add_argument("--patient", default="SYN001")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or make_run(Path(tmp))
        offscreen_views(out, args.patient, SHOTS / "COMPASS-2.png")
        browser_view(out, args.patient, SHOTS / "COMPASS-3.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
