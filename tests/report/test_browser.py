"""Open a phantom run's report in headless Chromium, as a reviewer would: every figure loads and
the page is not blank. Skips where Debian's chromium is not installed (`.ci/run` installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medfeat.report import build_report

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
    "--virtual-time-budget=10000",
]
# appended to a copy of the page (next to it, so relative paths resolve): it writes what the browser
# made of every <img> into the DOM, where --dump-dom can read it
PROBE = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.map.call(document.images, function (img) {
    return {src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth};
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(imgs);
  document.body.appendChild(pre);
});
</script>
"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
    )


def loaded_images(page: Path, tmp_path: Path) -> list[dict]:
    probe = page.with_name(f"_probe_{page.name}")
    html = page.read_text(encoding="utf-8")
    probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = chromium(tmp_path, "--dump-dom", probe.as_uri())
    probe.unlink()
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"Chromium did not run the page's scripts: {result.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture
def report(phantom_run) -> Path:
    return build_report(phantom_run)


def test_every_figure_of_the_report_loads_in_chromium(report, tmp_path):
    pages = [report, *sorted(report.parent.glob("*.html"))]
    seen = 0
    for page in dict.fromkeys(pages):
        expected = len(re.findall(r"<img ", page.read_text(encoding="utf-8")))
        imgs = loaded_images(page, tmp_path)
        assert len(imgs) == expected
        broken = [i["src"] for i in imgs if not i["complete"] or i["width"] == 0]
        assert broken == [], f"{page.name}: images that did not load: {broken}"
        seen += len(imgs)
    assert seen >= 7  # the case page alone has seven figures


def test_the_case_page_renders_with_its_figures(report, tmp_path):
    from matplotlib.image import imread

    page = report.parent / "breathing-phantom-seed0.html"
    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not a blank page
    # the figures are there: many dark pixels (image panels) and many distinct colours
    assert (pixels.mean(axis=-1) < 0.2).mean() > 0.05
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 500


def test_a_missing_figure_would_be_caught(report, tmp_path):
    """The check above can fail: delete one PNG and the browser reports it unloaded."""
    page = report.parent / "breathing-phantom-seed0.html"
    (report.parent / "breathing-phantom-seed0" / "jacobian.png").unlink()
    imgs = loaded_images(page, tmp_path)
    assert [i["src"] for i in imgs if i["width"] == 0] == ["breathing-phantom-seed0/jacobian.png"]
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
