"""Reading images from files or bytes into model inputs, with a clear error for each way an image can be bad.

Images become float tensors [n, 3, S, S] in [0, 1] (RGB), resized to the encoder's square input size; an encoder
applies its own scaling. Pillow does the decoding: PNG, JPEG, GIF (first frame), BMP and WebP are accepted; a
file Pillow cannot identify, a truncated one, or one whose pixel count is a decompression bomb is refused by name.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from foresight.errors import ForesightError

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
MAX_PIXELS = 40_000_000  # ~6,300 x 6,300: far more than any encoder needs, far less than a bomb's billions


def read_image(source: str | Path | bytes, where: str | None = None) -> Image.Image:
    """An RGB image from a file path or encoded bytes. `where` names the source in errors (default: the path)."""
    where = where or (str(source) if not isinstance(source, bytes) else "image")
    if not isinstance(source, bytes):
        path = Path(source)
        if path.is_dir():
            raise ForesightError(f"{where}: is a directory, not an image file")
        if not path.is_file():
            raise ForesightError(f"{where}: image file not found")
        source = path.read_bytes()
    if not source:
        raise ForesightError(f"{where}: empty (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS
            try:
                image = Image.open(io.BytesIO(source), formats=FORMATS)
                width, height = image.size
                image.load()  # decode now: a truncated file fails here, not later inside the model
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ForesightError(f"{where}: too many pixels to decode safely (limit {MAX_PIXELS:,}): a decompression "
                             f"bomb, or an image far larger than any encoder needs") from None
    except Image.UnidentifiedImageError:
        raise ForesightError(f"{where}: not an image this reader accepts ({', '.join(FORMATS)})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ForesightError(f"{where}: the image cannot be decoded ({e}); is the file truncated or damaged?") \
            from None
    if image.format == "GIF" or image.mode not in ("RGB", "L"):  # palette, alpha, CMYK ... -> RGB on white
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    return image.convert("RGB")


def image_tensor(images: list[Image.Image], size: int | None = None) -> torch.Tensor:
    """PIL images -> [n, 3, S, S] float in [0, 1]; resized to size x size (bicubic) when `size` is given,
    otherwise they must already share one square size."""
    if size is not None:
        images = [im if im.size == (size, size) else im.resize((size, size), Image.Resampling.BICUBIC)
                  for im in images]
    arrays = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
