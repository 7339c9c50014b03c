"""Image folders assembled from offline sources, for benchmarks on data that is not a built-in set.

``icons``: desktop icons (drawings) from the icon themes Debian ships, classified by what they
stand for — the freedesktop icon context the theme filed them under: ``apps``, ``devices``,
``mimetypes`` (documents), ``places`` (folders, drives), ``status`` and ``actions``. Several
themes drawn by different artists (GNOME, Faenza, elementary-xfce, Oxygen, Adwaita) are mixed,
every icon at 48 px, exact duplicates removed; train and test are split by a hash of the file
bytes, so the split is the same on every machine with the same packages.

    apt-get install gnome-icon-theme faenza-icon-theme elementary-xfce-icon-theme oxygen-icon-theme adwaita-icon-theme
    python -m benchmarks.folders icons /tmp/icons     # writes /tmp/icons/{train,test}/<class>/*.png
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

ICON_ROOT = Path("/usr/share/icons")
# theme folder -> how its 48-px folder of a context is found (context name substituted)
THEMES = {
    "gnome": "gnome/48x48/{ctx}",
    "Faenza": "Faenza/{ctx}/48",
    "elementary-xfce": "elementary-xfce/{ctx}/48",
    "oxygen": "oxygen/base/48x48/{ctx}",
    "Adwaita": "Adwaita/48x48/{ctx}",
}
CONTEXTS = {"apps": ["apps"], "devices": ["devices"], "mimetypes": ["mimetypes", "mimes"], "places": ["places"],
            "status": ["status"], "actions": ["actions"]}
APT_PACKAGES = "gnome-icon-theme faenza-icon-theme elementary-xfce-icon-theme oxygen-icon-theme adwaita-icon-theme"


def build_icons(out: str | Path, *, train_per_class: int = 50, test_per_class: int = 100) -> Path:
    """Write ``out/train/<class>`` (``train_per_class`` icons each) and ``out/test/<class>``."""
    out = Path(out)
    by_class: dict[str, dict[str, Path]] = {}
    for cls, names in CONTEXTS.items():
        files: dict[str, Path] = {}
        for pattern in THEMES.values():
            for ctx in names:
                folder = ICON_ROOT / pattern.format(ctx=ctx)
                if folder.is_dir():
                    for p in sorted(folder.glob("*.png")):
                        if p.is_file():
                            files.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), p.resolve())
        by_class[cls] = files
    # an identical drawing filed under two contexts would be a label clash: drop it from both
    seen: dict[str, int] = {}
    for files in by_class.values():
        for h in files:
            seen[h] = seen.get(h, 0) + 1
    need = train_per_class + test_per_class
    short = {c: len([h for h in f if seen[h] == 1]) for c, f in by_class.items()}
    if min(short.values()) < need:
        raise SystemExit(
            f"too few icons per context ({short}; need {need}): install the themes with\n  apt-get install {APT_PACKAGES}"
        )
    if out.exists():
        shutil.rmtree(out)
    for cls, files in by_class.items():
        hashes = sorted(h for h in files if seen[h] == 1)  # sorted hashes: a fixed pseudo-random order
        for split, chosen in (("train", hashes[:train_per_class]), ("test", hashes[train_per_class:need])):
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for h in chosen:
                shutil.copyfile(files[h], folder / f"{h[:16]}.png")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "icons":
        print(__doc__)
        sys.exit(2)
    print(build_icons(sys.argv[2]))
