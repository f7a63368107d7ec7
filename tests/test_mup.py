"""The muP coordinate check (foresight.model.coord_check): after a few AdamW steps, every layer's activation size
is independent of width under muP and grows with width under standard parametrization."""

import pytest
import torch

from foresight.model.coord_check import coord_check

WIDTHS = (64, 128, 256, 512, 1024)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small matmuls on a shared 2-core machine run several times faster on one thread than on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_mup_activations_do_not_depend_on_width():
    result = coord_check("mup", WIDTHS, steps=4)
    assert len(result.layers) == 8  # embed, attn/mlp/residual of 2 blocks, logits
    spread = result.spread()
    assert max(spread.values()) <= 2.0, spread
    first = [loss[0] for loss in result.losses]
    assert all(loss[-1] < loss[0] for loss in result.losses), result.losses  # it trained
    assert max(first) - min(first) < 0.1  # and every width started at the same loss


def test_sp_activations_grow_with_width():
    result = coord_check("sp", WIDTHS, steps=4)
    growth = result.growth()
    # The input embedding is vector-like (its updates do not sum over the width): the same in both
    # parametrizations, so it is the one layer that must not grow.
    assert 0.5 < growth.pop("embed") < 2.0
    assert min(growth.values()) > 2.0, growth
    for name in growth:  # and it grows steadily, width after width (not one outlier)
        last = result.mean_abs[name][-1]
        assert last[-1] > last[len(last) // 2] > last[0], (name, last)
