"""Open a report.html in headless Chromium: screenshot it and fail on console errors or broken
images (issue 12, item 6).

    python benchmarks/report_screenshot.py [REPORT_HTML] [--png OUT.png]

Without REPORT_HTML a small report is made first from analysis.synth curves (two groups, one
of them on too few P so that its verdict lists reasons). Chromium (Debian: `apt-get install
chromium`) runs with a fresh profile and no network features. The check runs a copy of the page
with a probe script that counts images that did not decode and records page errors; Chromium's
own console log (stderr) is scanned for errors too. Exit 0: no problem; 1: problems (listed);
2: Chromium missing or the page did not load.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WIDTH = 1300
# Runs first in the copy: records errors, then, once loaded, counts images that did not decode.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(
  'error: ' + (e.message || (e.target && (e.target.src || '').slice(0, 60)))), true);
for (const k of ['error', 'warn']) {
  const f = console[k];
  console[k] = (...a) => { window.__errors.push(k + ': ' + a.join(' ')); f(...a); };
}
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  const p = document.createElement('pre'); p.id = 'report-check';
  p.textContent = JSON.stringify({images: imgs.length, broken: broken,
    height: document.documentElement.scrollHeight, errors: window.__errors});
  document.body.appendChild(p);
});
</script>"""


def chromium(args: list[str], profile: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout)


def console_errors(stderr: str) -> list[str]:
    """Chromium's log lines about the page's console (CONSOLE) at error level."""
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln and ":ERROR:" in ln]


def check(html: Path, png: Path) -> list[str]:
    """Problems of the page (empty: none); writes the full-page screenshot to png."""
    import json

    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"no Chromium at {CHROMIUM}")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        text = html.read_text()
        probe.write_text(text.replace("<head>", "<head>" + PROBE, 1))
        run = chromium(
            ["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], f"{tmp}/profile1"
        )
        found = re.search(r'<pre id="report-check">(.*?)</pre>', run.stdout, re.S)
        if found is None:
            raise RuntimeError(f"the page did not load: {run.stderr.strip()[-300:]}")
        state = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        problems = [f"console: {e}" for e in state["errors"]]
        problems += [f"chromium log: {ln}" for ln in console_errors(run.stderr)]
        if state["broken"]:
            problems.append(f"{state['broken']} of {state['images']} images did not load")
        height = min(int(state["height"]) + 20, 16000)
        shot = chromium(
            [f"--screenshot={png}", f"--window-size={WIDTH},{height}", html.resolve().as_uri()],
            f"{tmp}/profile2",
        )
        problems += [f"chromium log: {ln}" for ln in console_errors(shot.stderr)]
        if not png.is_file():
            raise RuntimeError(f"no screenshot written: {shot.stderr.strip()[-300:]}")
    return problems


def synthetic_report(out: Path) -> Path:
    """A small report from analysis.synth: a clean group and one with too few P for gamma2."""
    import pandas as pd

    from analysis import report, synth

    ok = synth.make_sweep(P_list=(1e3, 2e3, 4e3, 8e3), seeds_per_P=4, n_points=80,
                          group="cnn|mnist|adam|wd=0.0|norm/spectral_complexity")  # fmt: skip
    few = synth.make_sweep(P_list=(1e3, 2e3), seeds_per_P=4, n_points=80, seed=1,
                           group="perceptron|teacher|gd|wd=0.0|norm")  # fmt: skip
    csv = out / "curves.csv"
    out.mkdir(parents=True, exist_ok=True)
    pd.concat([ok, few]).to_csv(csv, index=False)
    rc = report.main(["--curves", str(csv), "--out", str(out / "report"), "--n-boot", "50",
                      "--quiet"])  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"analysis.report exited with {rc}")
    return out / "report" / "report.html"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", nargs="?", help="report.html (default: a synthetic one)")
    p.add_argument("--png", default="report_screenshot.png", help="screenshot file")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"error: no Chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(args.html) if args.html else synthetic_report(Path(tmp))
        if not html.is_file():
            print(f"error: no such file: {html}", file=sys.stderr)
            return 2
        problems = check(html, Path(args.png))
    print(f"screenshot: {args.png}")
    for line in problems:
        print(f"PROBLEM {line}")
    print("ok: no console errors, every image loaded" if not problems else "FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
