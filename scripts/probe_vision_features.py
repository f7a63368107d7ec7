"""How much of each question's answer can be read off the frozen EfficientNet-Lite0's features, layer by layer?

Recipe (a) trains only a projector (stage 1) and then the projector and language model (stage 2) on the frozen
encoder's last feature map. If a small probe trained on that map cannot tell yellow from orange or read a word, no
amount of stage-2 training will: the information is not there. This script fits the same probe on four taps of the
encoder, each brought to the 7x7 grid (pixel-unshuffle, so a token still covers the same 32x32 pixels):

  stage 3: 28x28x40  -> 7x7x640      stage 5: 14x14x112 -> 7x7x448
  stage 7:  7x7x320  -> 7x7x320      head:     7x7x1280 (what recipe (a) uses)

and on all four concatenated, and prints held-out accuracy per question type. The probe keeps the grid's layout
(per-token Linear(D, 64), GELU, then one Linear over the 49 x 64 values), so position and count are readable.

    python scripts/probe_vision_features.py --train 1200 --heldout 300
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from foresight.data import labelled, scenes
from foresight.data.images import image_tensor
from foresight.model.vision import pretrained_lite0

# Where each tap sits: the index of the last block of EfficientNet-Lite0's stages 3, 5 and 7, and its unshuffle.
TAPS = {"stage3": (4, 4), "stage5": (10, 2), "stage7": (15, 1)}


def encoder_taps(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """images [B, 3, 224, 224] -> {tap: [B, 49, C]} (the head's map included)."""
    x = model.stem(model.scale(images))
    out = {}
    for i, block in enumerate(model.blocks):
        x = block(x)
        for name, (index, r) in TAPS.items():
            if i == index:
                out[name] = F.pixel_unshuffle(x, r).flatten(2).transpose(1, 2)
    out["head"] = model.head(x).flatten(2).transpose(1, 2)
    return out


def questions(split: str, n: int) -> dict[str, tuple[list, list[str]]]:
    """{question type: (image makers, answers)} for n images per group."""
    groups = {}
    single = [scenes.scene(split, i, 16, ("single",)) for i in range(n)]
    for qtype, k in (("colour", 0), ("shape", 1), ("position", 2)):
        groups[qtype] = ([("single", i) for i in range(n)], [s.questions[k][2] for s in single])
    for kind in ("count", "text"):
        groups[kind] = ([(kind, i) for i in range(n)],
                        [scenes.scene(split, i, 16, (kind,)).questions[0][2] for i in range(n)])
    # A chart's question names one bar; the probe answers a fixed one (the first bar's value, from the caption).
    groups["chart"] = ([("chart", i) for i in range(n)],
                       [scenes.scene(split, i, 16, ("chart",)).caption.split("A is ")[1].split(",")[0]
                        for i in range(n)])
    for name in ("mnist", "fashion_mnist"):
        items = labelled.images(name, split)[:n]
        groups[name] = ([(name, it) for it in items], [it.label for it in items])
    return groups


def features(model, split: str, n: int, batch: int = 32) -> tuple[dict, dict]:
    """{image key: {tap: [49, C] fp16}} for every image the questions use, and the questions."""
    groups = questions(split, n)
    keys = {src for makers, _ in groups.values() for src in makers}
    keys = sorted(keys, key=lambda k: (k[0], k[1] if isinstance(k[1], int) else k[1].index))
    feats = {}
    start = time.time()
    for b in range(0, len(keys), batch):
        chunk = keys[b:b + batch]
        pics = [scenes.scene(split, ref, 224, (kind,)).image if kind in scenes.KINDS else ref.image(224)
                for kind, ref in chunk]
        with torch.no_grad():
            taps = encoder_taps(model, image_tensor(pics))
        for j, key in enumerate(chunk):
            feats[key] = {name: t[j].half() for name, t in taps.items()}
        print(f"\r{split}: {b + len(chunk)}/{len(keys)} images, {time.time() - start:.0f} s", end="", flush=True)
    print()
    return feats, groups


class Probe(nn.Module):
    def __init__(self, dim: int, classes: int, width: int = 64):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.token = nn.Linear(dim, width)
        self.out = nn.Linear(49 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.token(self.norm(x))).flatten(1))


def fit(train_x, train_y, test_x, test_y, classes: int, epochs: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    probe = Probe(train_x.shape[-1], classes)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0.05)
    for _ in range(epochs):
        order = torch.randperm(len(train_x))
        for b in range(0, len(order), 64):
            idx = order[b:b + 64]
            loss = F.cross_entropy(probe(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return (probe(test_x).argmax(-1) == test_y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=1200, help="training images per question type")
    parser.add_argument("--heldout", type=int, default=300, help="held-out images per question type")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = pretrained_lite0().eval()
    train_feats, train_q = features(model, "train", args.train)
    test_feats, test_q = features(model, "heldout", args.heldout)
    taps = list(TAPS) + ["head", "all"]
    print(f"{'question':<14}" + "".join(f"{t:>9}" for t in taps) + f"{'majority':>10}")
    for qtype, (makers, answers) in train_q.items():
        test_makers, test_answers = test_q[qtype]
        labels = sorted(set(answers) | set(test_answers))
        y = torch.tensor([labels.index(a) for a in answers])
        ty = torch.tensor([labels.index(a) for a in test_answers])
        majority = max(test_answers.count(a) for a in set(test_answers)) / len(test_answers)
        row = []
        for tap in taps:
            def stack(feats, keys):
                if tap == "all":
                    return torch.stack([torch.cat([feats[k][t] for t in list(TAPS) + ["head"]], -1)
                                        for k in keys]).float()
                return torch.stack([feats[k][tap] for k in keys]).float()
            row.append(fit(stack(train_feats, makers), y, stack(test_feats, test_makers), ty, len(labels),
                           args.epochs))
        print(f"{qtype:<14}" + "".join(f"{100 * a:>9.1f}" for a in row) + f"{100 * majority:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
