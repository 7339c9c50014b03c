"""Image folders assembled from offline sources, for benchmarks on data that is not a built-in set.

``icons``: desktop icons (drawings) from the icon themes Debian ships, classified by what they
stand for — the freedesktop icon context the theme filed them under: ``apps``, ``devices``,
``mimetypes`` (documents), ``places`` (folders, drives), ``status`` and ``actions``. Several
themes drawn by different artists (GNOME, Faenza, elementary-xfce, Oxygen, Adwaita) are mixed,
every icon at 48 px, exact duplicates removed; train and test are split by a hash of the file
bytes, so the split is the same on every machine with the same packages.

    apt-get install gnome-icon-theme faenza-icon-theme elementary-xfce-icon-theme oxygen-icon-theme adwaita-icon-theme
    python -m benchmarks.folders icons /tmp/icons     # writes /tmp/icons/{train,test}/<class>/*.png
    python -m benchmarks.folders icons /tmp/icons --unlabeled   # and every other icon in /tmp/icons/unlabeled/<class>/

``fm-scenes``: segmentation scenes — several Fashion-MNIST garments (2 to 4, each scaled to
24–40 px, later ones in front) laid on a textured canvas; each pixel's label is the class of
the garment whose pixels cover it (a garment pixel is one brighter than 24 of 255 in the
original), 0 where the canvas shows. Training scenes take garments from the training split,
test scenes from the test split.

    python -m benchmarks.folders fm-scenes /tmp/scenes   # /tmp/scenes/{train,test}/{images,masks}, classes.txt

``fm-boxes``: detection — issue 7's placed Fashion-MNIST set with its boxes for every split:
each garment enlarged to 36–76 px and pasted on a 112-px canvas of smooth random texture with a
few lines; the box is the garment's silhouette, known exactly. ``train`` (50 per class) and
``train50`` (5 per class, a subset of it) and ``test`` (50 per class from the test split), each
a folder of class subfolders (a classification set of the same images) with ``boxes.csv``
(``path,x0,y0,x1,y1,label``, paths relative to it).

    python -m benchmarks.folders fm-boxes /tmp/boxed     # /tmp/boxed/{train,train50,test}/<class>/*.png + boxes.csv

``cutouts``: the icons above (RGBA, the alpha is the object) in one folder per split for
``segment train`` (foreground vs background; each icon is laid on a background of its own).

    python -m benchmarks.folders cutouts /tmp/cutouts     # /tmp/cutouts/{train,test}/*.png

The unlabeled share is every icon left over after train and test (about 2,300 with the themes
above, as unevenly spread over the classes as the themes draw them); its class subfolders are
never used for training, only to score pseudo-labels.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

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


def _icon_files(contexts: list[str]) -> dict[str, Path]:
    """SHA-256 of the file → the file, for every 48-px PNG the themes file under ``contexts``
    (exact duplicates collapse onto one file)."""
    files: dict[str, Path] = {}
    for pattern in THEMES.values():
        for ctx in contexts:
            folder = ICON_ROOT / pattern.format(ctx=ctx)
            if folder.is_dir():
                for p in sorted(folder.glob("*.png")):
                    if p.is_file():
                        files.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), p.resolve())
    return files


def build_icons(out: str | Path, *, train_per_class: int = 50, test_per_class: int = 100, unlabeled: bool = False) -> Path:
    """Write ``out/train/<class>`` (``train_per_class`` icons each) and ``out/test/<class>``; with
    ``unlabeled``, also ``out/unlabeled/<class>`` holding every remaining icon."""
    out = Path(out)
    by_class: dict[str, dict[str, Path]] = {}
    for cls, names in CONTEXTS.items():
        by_class[cls] = _icon_files(names)
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
        splits = [("train", hashes[:train_per_class]), ("test", hashes[train_per_class:need])]
        if unlabeled:
            splits.append(("unlabeled", hashes[need:]))
        for split, chosen in splits:
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for h in chosen:
                shutil.copyfile(files[h], folder / f"{h[:16]}.png")
    return out


SCENE_SIZE = 96
GARMENT_THRESHOLD = 24


def _canvas(rng, size: int) -> np.ndarray:
    """A textured canvas: a smooth random colour field, faint stripes and fine noise."""
    grid = rng.integers(0, 256, size=(5, 5, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(grid).resize((size, size), resample=Image.Resampling.BICUBIC), dtype=np.float64)
    stripes = 20 * np.sin(np.arange(size)[None, :, None] * rng.uniform(0.2, 0.9) + rng.uniform(0, 6.3))
    return np.clip(smooth * 0.8 + stripes + rng.normal(0, 10, size=(size, size, 1)), 0, 255)


def build_fm_scenes(out: str | Path, *, n_train: int = 500, n_test: int = 300, size: int = SCENE_SIZE, seed: int = 0,
                    objects: tuple[int, int] = (2, 4)) -> Path:
    """Write ``out/{train,test}/images/*.png``, ``masks/*.png`` and ``classes.txt`` (background +
    the 10 garments), ``objects`` = (fewest, most) garments per scene. With one garment per scene
    (``objects=(1, 1)``) each split is also a classification set: ``by_class/<class>/<stem>.png``
    (the same images) and ``masks.csv`` (``path,mask`` rows, the form ``explain --gt`` reads)."""
    from headstart.data import resolve

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    for split, n, s_seed in (("train", n_train, seed), ("test", n_test, seed + 1000)):
        fm = resolve("fashion-mnist", split=split)
        rng = np.random.default_rng(s_seed)
        root = out / split
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        (root / "classes.txt").write_text("\n".join(["background"] + list(fm.classes)) + "\n")
        single = objects == (1, 1)
        gt_rows = ["path,mask"]
        for i in range(n):
            img = _canvas(rng, size)
            mask = np.zeros((size, size), dtype=np.uint8)
            for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
                j = int(rng.integers(len(fm)))
                side = int(rng.integers(24, 41))
                g = np.asarray(Image.fromarray(fm.images[j]).resize((side, side), resample=Image.Resampling.BILINEAR), dtype=np.float64)
                y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
                on = g > GARMENT_THRESHOLD
                colour = rng.uniform(0.5, 1.0, size=3)  # a dyed garment: its grey levels times a colour
                patch = img[y : y + side, x : x + side]
                patch[on] = g[on][:, None] * colour[None, :] * 255 / max(1.0, g.max())
                mask[y : y + side, x : x + side][on] = int(fm.labels[j]) + 1
            stem = f"{split}{i:04d}"
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"{stem}.png")
            Image.fromarray(mask, mode="L").save(root / "masks" / f"{stem}.png")
            if single:
                folder = root / "by_class" / fm.classes[int(fm.labels[j])].replace("/", "-")
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / "images" / f"{stem}.png", folder / f"{stem}.png")
                gt_rows.append(f"{folder / (stem + '.png')},{root / 'masks' / (stem + '.png')}")
        if single:
            (root / "masks.csv").write_text("\n".join(gt_rows) + "\n")
    return out


def build_cutouts(out: str | Path, *, train: int = 300, test: int = 200) -> Path:
    """Icons with transparency (every context mixed), ``out/train/*.png`` and ``out/test/*.png``:
    split by the hash of the file bytes, like ``build_icons``; icons without an alpha channel or
    fully opaque are left out."""
    out = Path(out)
    files: dict[str, Path] = {}
    for names in CONTEXTS.values():
        for h, p in _icon_files(names).items():
            files.setdefault(h, p)
    usable = []
    for h in sorted(files):
        with Image.open(files[h]) as img:
            if img.mode not in ("RGBA", "LA"):
                continue
            alpha = np.asarray(img.convert("RGBA"))[..., 3]
        if 0.05 < (alpha >= 128).mean() < 0.95:
            usable.append(h)
        if len(usable) >= train + test:
            break
    if len(usable) < train + test:
        raise SystemExit(f"{len(usable)} icons with transparency, need {train + test}: install the themes with\n  apt-get install {APT_PACKAGES}")
    if out.exists():
        shutil.rmtree(out)
    for split, chosen in (("train", usable[:train]), ("test", usable[train : train + test])):
        (out / split).mkdir(parents=True)
        for h in chosen:
            shutil.copyfile(files[h], out / split / f"{h[:16]}.png")
    return out


def build_fm_boxes(out: str | Path, *, train_per_class: int = 50, small_per_class: int = 5, test_per_class: int = 50) -> Path:
    """Write the ``fm-boxes`` set (see the module) to ``out``; returns ``out``."""
    import csv

    from benchmarks.explain import _pick, _place, _safe
    from headstart.data import resolve

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(0)
    for split, source, n in (("train", "train", train_per_class), ("test", "test", test_per_class)):
        s = resolve("fashion-mnist", split=source)
        rows = [["path", "x0", "y0", "x1", "y1", "label"]]
        small = [["path", "x0", "y0", "x1", "y1", "label"]]
        kept = {c: 0 for c in range(len(s.classes))}
        for i in _pick(s.labels, n, seed=3):
            c = int(s.labels[i])
            cls = _safe(s.classes[c])
            (out / split / cls).mkdir(parents=True, exist_ok=True)
            img, box = _place(s.images[i], rng)
            name = f"{cls}/{i}.png"
            Image.fromarray(img).save(out / split / name)
            rows.append([name, *box, cls])
            if split == "train" and kept[c] < small_per_class:
                kept[c] += 1
                (out / "train50" / cls).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / split / name, out / "train50" / name)
                small.append([name, *box, cls])
        with (out / split / "boxes.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        if split == "train":
            with (out / "train50" / "boxes.csv").open("w", newline="") as f:
                csv.writer(f).writerows(small)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    flag = "--unlabeled" in args
    args = [x for x in args if x != "--unlabeled"]
    builders = {"icons": lambda o: build_icons(o, unlabeled=flag), "fm-scenes": build_fm_scenes, "fm-boxes": build_fm_boxes,
                "cutouts": build_cutouts}
    if len(args) != 2 or args[0] not in builders:
        print(__doc__)
        sys.exit(2)
    print(builders[args[0]](args[1]))
