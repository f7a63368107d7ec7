"""The Transformer's pieces: forward is hidden_states then logits, and a KV cache whose rows hold different numbers
of tokens computes what each row's sequence computes alone, without a cache."""

from __future__ import annotations

import pytest
import torch

from foresight.model import KVCache, ModelConfig, Transformer


def small_model(**overrides) -> Transformer:
    """A random 2-layer model with grouped-query attention and a large init (logits far apart)."""
    cfg = dict(vocab_size=300, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, parametrization="sp",
               init_std=0.3)
    torch.manual_seed(0)
    return Transformer(ModelConfig(**{**cfg, **overrides})).eval()


def uncached_logits(model: Transformer, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokens]))[0]


@pytest.mark.parametrize("options", [dict(), dict(embed_mult=10.0),
                                     dict(parametrization="mup", mup_base_width=32, mup_base_head_dim=8,
                                          output_mult=2.0, embed_mult=10.0)],
                         ids=["sp", "sp-embed-mult", "mup-embed-mult"])
def test_forward_is_hidden_states_then_logits(options):
    model = small_model(**options)
    tokens = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(tokens)
        assert torch.equal(model.logits(model.hidden_states(tokens)), logits)
        torch.testing.assert_close(model(tokens, last_only=True), logits[:, -1:])  # (another matmul shape)
        # the head carries the muP readout multiplier, the embedding the input multiplier
        unscaled = model.lm_head(model.hidden_states(tokens))
        torch.testing.assert_close(logits, unscaled * model.logit_scale)
    if "mup_base_width" in options:
        assert model.logit_scale == 1.0  # 2.0 / width_mult 2


def test_cache_rows_at_different_lengths_equal_each_row_alone():
    model = small_model()
    gen = torch.Generator().manual_seed(2)
    seqs = [torch.randint(0, 300, (n,), generator=gen).tolist() for n in (7, 2, 11, 5)]
    cache = KVCache(model.cfg, 4, 24)

    def check(rows: list[int], new: list[list[int]]):
        """Feed new[i] to cache row i (holding seqs[rows[i]]) and compare with each whole sequence uncached."""
        with torch.no_grad():
            logits = model(torch.tensor(new), cache=cache)
        for i, row in enumerate(rows):
            seqs[row] += new[i]
            alone = uncached_logits(model, seqs[row])[-len(new[i]):]
            torch.testing.assert_close(logits[i], alone, atol=1e-4, rtol=1e-4)
        assert cache.host_lengths == [len(seqs[r]) for r in rows] == cache.lengths.tolist()

    # Fill the rows right-padded in one causal pass, then say how long each really is.
    width = max(len(s) for s in seqs)
    with torch.no_grad():
        model(torch.tensor([s + [0] * (width - len(s)) for s in seqs]), cache=cache)
    cache.set_lengths([len(s) for s in seqs])
    assert not cache.equal_lengths and cache.longest == 11
    check([0, 1, 2, 3], [[5, 6, 7], [8, 9, 10], [11, 12, 13], [14, 15, 16]])  # several tokens per row
    check([0, 1, 2, 3], [[20], [21], [22], [23]])  # one token per row, as in decoding
    cache.reorder([3, 1])  # rows 0 and 2 leave
    check([3, 1], [[30, 31], [32, 33]])
    # Row 1's slot goes to a new sequence while row 0 carries on.
    cache.reset(1)
    seqs.append([])
    check([3, 4], [[40, 41, 42], [43, 44, 45]])
    check([3, 4], [[50], [51]])
    # Rows at the same length again: the fast paths (no mask) must agree too.
    cache.set_lengths([len(seqs[4])] * 2)
    seqs[3] = seqs[3][:len(seqs[4])]
    check([3, 4], [[60], [61]])


def test_cache_refuses_what_does_not_fit():
    model = small_model()
    cache = KVCache(model.cfg, 2, 8)
    cache.set_lengths([7, 3])
    with torch.no_grad(), pytest.raises(ValueError, match="KV cache is full"):
        model(torch.tensor([[1, 2], [3, 4]]), cache=cache)
    with pytest.raises(ValueError, match="do not fit"):
        cache.set_lengths([9, 0])
    with torch.no_grad(), pytest.raises(ValueError, match="beyond max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))
