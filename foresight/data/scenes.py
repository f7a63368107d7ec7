"""Synthetic scenes drawn with Pillow, whose answers are known by construction.

Each scene is a pure function of (split, index, size): the same picture, caption and questions on every machine,
so nothing is stored and no split can leak into another (train and held-out scenes come from differently seeded
generators; a held-out scene may repeat a train scene's attributes, never its exact drawing). Five kinds:

- `single`: one shape (circle, square, triangle, diamond) of one colour in one quadrant. Questions: its colour, its
  shape, its position ("top left" ...).
- `count`: 1 to 6 shapes of one kind and colour, in distinct cells of a 3x3 grid (so they never overlap). Question:
  how many.
- `relation`: two shapes of different colours and kinds side by side. Question: is the first left or right of the
  second (a position question).
- `text`: a word from `WORDS` in a DejaVu font (one of four faces), dark on light, at a random place. Question: the
  word.
- `chart`: a bar chart of 3 or 4 bars labelled A-D with whole values 1-9 on a gridded axis. Question: one bar's value.

Every scene has a caption (for the projector's alignment stage) and question-answer pairs tagged with their type
(colour, shape, position, count, text, chart), each answered in one word or number.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SEED = 20  # the number
SPLITS = ("train", "heldout")
KINDS = ("single", "count", "relation", "text", "chart")
QUESTION_TYPES = ("colour", "shape", "position", "count", "text", "chart")

COLOURS = {"red": (215, 35, 35), "green": (35, 150, 55), "blue": (35, 75, 215), "yellow": (235, 195, 20),
           "purple": (135, 50, 165), "orange": (240, 125, 20)}
SHAPES = ("circle", "square", "triangle", "diamond")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
# Short, common words to read: distinct spellings, no two a prefix of each other's first four letters.
WORDS = ("apple", "river", "house", "green", "tiger", "music", "chair", "light", "water", "bread", "stone", "cloud",
         "horse", "table", "money", "paper", "plant", "smile", "train", "sugar", "dream", "fruit", "glass", "heart",
         "juice", "knife", "lemon", "mouse", "night", "ocean", "piano", "queen", "radio", "snake", "tooth", "uncle",
         "voice", "whale", "youth", "zebra", "beach", "candy", "dance", "earth", "flame", "grape", "honey", "igloo")
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FACES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")


@dataclass
class Scene:
    image: Image.Image
    kind: str
    caption: str
    # (question type, question, answer)
    questions: list[tuple[str, str, str]] = field(default_factory=list)


@functools.lru_cache(maxsize=64)
def _font(face: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONT_DIR / face
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)  # Pillow's own scalable font, where Debian's DejaVu is not installed


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.88
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _plural(shape: str) -> str:
    return shape + "s"


def _single(rng: random.Random, draw, c: int) -> Scene:
    colour, shape, quadrant = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.randrange(4)
    r = c * rng.uniform(0.13, 0.2)
    half = c / 2
    cx = (quadrant % 2) * half + rng.uniform(r + 2, half - r - 2)
    cy = (quadrant // 2) * half + rng.uniform(r + 2, half - r - 2)
    _draw_shape(draw, shape, cx, cy, r, COLOURS[colour])
    where = QUADRANTS[quadrant]
    return Scene(None, "single", f"{_a(colour).capitalize()} {shape} in the {where} corner.", [
        ("colour", "What colour is the shape?", colour),
        ("shape", "What shape is this?", shape),
        ("position", "Where is the shape: top left, top right, bottom left or bottom right?", where)])


def _count(rng: random.Random, draw, c: int) -> Scene:
    n, colour, shape = rng.randint(1, 6), rng.choice(list(COLOURS)), rng.choice(SHAPES)
    cell = c / 3
    r = cell * rng.uniform(0.24, 0.32)
    for k in rng.sample(range(9), n):
        cx = (k % 3) * cell + cell / 2 + rng.uniform(-0.12, 0.12) * cell
        cy = (k // 3) * cell + cell / 2 + rng.uniform(-0.12, 0.12) * cell
        _draw_shape(draw, shape, cx, cy, r, COLOURS[colour])
    noun = shape if n == 1 else _plural(shape)
    return Scene(None, "count", f"{n} {colour} {noun}.", [
        ("count", f"How many {_plural(shape)} are there?", str(n))])


def _relation(rng: random.Random, draw, c: int) -> Scene:
    (a_col, b_col), (a_shape, b_shape) = rng.sample(list(COLOURS), 2), rng.sample(SHAPES, 2)
    r = c * rng.uniform(0.1, 0.15)
    left_x, right_x = rng.uniform(r + 2, c * 0.4), rng.uniform(c * 0.6, c - r - 2)
    a_left = rng.random() < 0.5
    ax, bx = (left_x, right_x) if a_left else (right_x, left_x)
    _draw_shape(draw, a_shape, ax, rng.uniform(r + 2, c - r - 2), r, COLOURS[a_col])
    _draw_shape(draw, b_shape, bx, rng.uniform(r + 2, c - r - 2), r, COLOURS[b_col])
    side = "left" if a_left else "right"
    return Scene(None, "relation", f"{_a(a_col).capitalize()} {a_shape} to the {side} of {_a(b_col)} {b_shape}.", [
        ("position", f"Is the {a_col} {a_shape} to the left or to the right of the {b_col} {b_shape}?", side)])


def _text(rng: random.Random, draw, c: int) -> Scene:
    word = rng.choice(WORDS)
    font = _font(rng.choice(FONT_FACES), int(c * rng.uniform(0.16, 0.22)))
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    w, h = right - left, bottom - top
    x = rng.uniform(2, max(2.0, c - w - 2)) - left
    y = rng.uniform(2, max(2.0, c - h - 2)) - top
    shade = rng.randint(0, 70)
    draw.text((x, y), word, fill=(shade, shade, shade), font=font)
    return Scene(None, "text", f'The word "{word}" written in black.', [
        ("text", "What word is written in the image?", word)])


def _chart(rng: random.Random, draw, c: int) -> Scene:
    n = rng.choice((3, 4))
    values = [rng.randint(1, 9) for _ in range(n)]
    labels = "ABCD"[:n]
    colour = COLOURS[rng.choice(list(COLOURS))]
    x0, x1, y0, y1 = c * 0.14, c * 0.97, c * 0.85, c * 0.05  # plot box: y0 is the baseline (value 0), y1 is 10
    font = _font("DejaVuSans.ttf", max(8, int(c * 0.07)))
    for v in range(0, 11, 2):  # gridlines and tick labels every 2
        y = y0 + (y1 - y0) * v / 10
        draw.line([(x0, y), (x1, y)], fill=(200, 200, 200), width=max(1, c // 224))
        draw.text((x0 - c * 0.02, y), str(v), fill=(60, 60, 60), font=font, anchor="rm")
    slot = (x1 - x0) / n
    for i, (label, v) in enumerate(zip(labels, values)):
        left = x0 + slot * (i + 0.2)
        draw.rectangle([left, y0 + (y1 - y0) * v / 10, left + slot * 0.6, y0], fill=colour)
        draw.text((left + slot * 0.3, y0 + c * 0.02), label, fill=(0, 0, 0), font=font, anchor="mt")
    draw.line([(x0, y0), (x1, y0)], fill=(0, 0, 0), width=max(1, c // 112))
    k = rng.randrange(n)
    caption = "A bar chart: " + ", ".join(f"{lab} is {v}" for lab, v in zip(labels, values)) + "."
    return Scene(None, "chart", caption, [("chart", f"What is the value of bar {labels[k]}?", str(values[k]))])


_DRAW = {"single": _single, "count": _count, "relation": _relation, "text": _text, "chart": _chart}


def scene(split: str, index: int, size: int, kinds: tuple[str, ...] = KINDS) -> Scene:
    """Scene number `index` of `split`, drawn at size x size pixels (RGB). Its kind cycles through `kinds`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    unknown = [k for k in kinds if k not in _DRAW]
    if unknown:
        raise ValueError(f"unknown scene kind {unknown[0]!r} (kinds: {', '.join(KINDS)})")
    kind = kinds[index % len(kinds)]
    rng = random.Random(f"{SEED}:{split}:{kind}:{index}")
    canvas = 2 * size  # drawn at twice the size and scaled down: smooth edges at any size
    background = tuple(rng.randint(235, 255) for _ in range(3))
    image = Image.new("RGB", (canvas, canvas), background)
    made = _DRAW[kind](rng, ImageDraw.Draw(image), canvas)
    made.image = image.resize((size, size), Image.Resampling.LANCZOS)
    return made


# ----- conversations for training and evaluation -------------------------------------------------------------------

CAPTION_REQUEST = "Describe the image."
ONE_WORD = "Answer with one word."


def image_turn(text: str) -> dict:
    """A user message holding the image, then a new line and `text` (OpenAI-style content parts)."""
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "\n" + text}]}


@dataclass
class SceneExample:
    split: str
    index: int  # the scene: scene(split, index, size, kinds)
    task: str  # "caption" or a question type
    messages: list[dict]  # user turn with the image, then the assistant's reply
    answer: str
    kinds: tuple[str, ...] = KINDS

    def image(self, size: int) -> Image.Image:
        return scene(self.split, self.index, size, self.kinds).image


def examples(split: str, n_scenes: int, kinds: tuple[str, ...] = KINDS, tasks: tuple[str, ...] = ("qa",)
             ) -> list[SceneExample]:
    """Conversations about scenes 0 .. n_scenes-1 of `split`: "caption" (describe the image -> its caption) and/or
    "qa" (each of the scene's questions, to be answered in one word). The captions and questions do not depend on
    the size a scene is drawn at, so they are read from small drawings."""
    out = []
    for index in range(n_scenes):
        s = scene(split, index, 16, kinds)
        if "caption" in tasks:
            out.append(SceneExample(split, index, "caption", [image_turn(CAPTION_REQUEST),
                                                              {"role": "assistant", "content": s.caption}], s.caption,
                                    kinds))
        if "qa" in tasks:
            for qtype, question, answer in s.questions:
                out.append(SceneExample(split, index, qtype, [image_turn(f"{question} {ONE_WORD}"),
                                                              {"role": "assistant", "content": answer}], answer, kinds))
    return out
