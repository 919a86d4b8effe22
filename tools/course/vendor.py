"""Offline slides: the four web libraries nbconvert's reveal.js template loads, copied next to the slides.

nbconvert's slides (and HTML) template loads reveal.js from unpkg and require.js, jQuery and MathJax
from cdnjs. In a lecture hall without a network the slides then show as one long unstyled page with
raw TeX. :func:`vendor_web_libraries` fetches pinned copies once (``npm pack``, which reads the npm
registry: run it where you build the slides, before class) into ``OUT/vendor/`` and returns the
exporter settings that point the slides at them, as relative links, so the folder can be copied
to a USB stick and opened from ``file://``.

The pins are those of nbconvert 7's template (reveal.js 4.0.2, require.js 2.1.10, MathJax 2.7.7), except
jQuery: 2.0.3 is not on npm, 2.2.4 (the last 2.x) is. MathJax is trimmed to what the template's
``TeX-AMS_CHTML-full`` configuration loads (about 11 MB instead of 60 MB).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from toolkit._core.validation import InputError

__all__ = ["VENDORED", "extract_package", "vendor_web_libraries"]

#: npm package spec -> (folder under vendor/, the member prefixes kept, or () for all)
VENDORED: dict[str, tuple[str, tuple[str, ...]]] = {
    "reveal.js@4.0.2": ("reveal.js", ("dist/", "plugin/notes/")),
    "requirejs@2.1.10": ("requirejs", ("require.js",)),
    "jquery@2.2.4": ("jquery", ("dist/jquery.min.js",)),
    "mathjax@2.7.7": ("mathjax", ("MathJax.js", "config/", "jax/input/TeX/", "jax/output/CommonHTML/",
                                  "jax/element/", "extensions/", "localization/en/", "fonts/HTML-CSS/TeX/woff/")),
}


def extract_package(tgz: Path, target: Path, keep: tuple[str, ...]) -> int:
    """Unpack the members of an npm tarball (all under ``package/``) that start with one of ``keep``."""
    with tarfile.open(tgz) as tar:
        members = []
        for m in tar.getmembers():
            if not m.isfile() or not m.name.startswith("package/"):
                continue
            rel = m.name[len("package/"):]
            if keep and not rel.startswith(keep):
                continue
            m.name = rel
            members.append(m)
        tar.extractall(target, members=members, filter="data")
    return len(members)


def vendor_web_libraries(out: Path, *, npm: str | None = None, timeout: float = 300) -> dict[str, str]:
    """Fetch the slides' web libraries into ``out/vendor/``; return the SlidesExporter settings for them.

    Returns ``{"reveal_url_prefix", "require_js_url", "jquery_url", "mathjax_url"}`` as links relative to
    ``out``. A folder already filled by an earlier call is reused. Raises ``InputError`` when ``npm`` is not
    installed, or names the package when the registry cannot be reached.
    """
    out = Path(out)
    vendor = out / "vendor"
    settings = {
        "reveal_url_prefix": "vendor/reveal.js",
        "require_js_url": "vendor/requirejs/require.js",
        "jquery_url": "vendor/jquery/dist/jquery.min.js",
        "mathjax_url": "vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    }
    missing = {spec: v for spec, v in VENDORED.items() if not (vendor / v[0] / ".complete").exists()}
    if not missing:
        return settings
    npm = npm or shutil.which("npm")
    if npm is None:
        raise InputError("offline slides need npm (apt-get install npm) to fetch reveal.js, require.js, jQuery "
                         "and MathJax once; build without --offline to load them from their CDNs instead")
    with tempfile.TemporaryDirectory() as tmp:
        for spec, (folder, keep) in missing.items():
            done = subprocess.run([npm, "pack", "--silent", spec], cwd=tmp, capture_output=True, text=True,
                                  timeout=timeout)
            if done.returncode != 0:
                raise InputError(f"npm pack {spec} failed (is the npm registry reachable?): "
                                 f"{done.stderr.strip().splitlines()[-1:] or done.returncode}")
            tgz = Path(tmp) / done.stdout.strip().splitlines()[-1]
            target = vendor / folder
            shutil.rmtree(target, ignore_errors=True)
            extract_package(tgz, target, keep)
            (target / ".complete").write_text(spec + "\n")
    return settings
