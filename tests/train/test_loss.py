"""Loss over answer tokens: token mean equals HF's, sample mean weighs every dialogue equally."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from colonpipe.train.loss import causal_lm_loss


def test_token_mean_matches_shifted_cross_entropy():
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, -100, 3, 4, -100, -100], [-100, 1, 2, 3, 4, 5]])
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(causal_lm_loss(logits, labels, reduction="token"), ref)


def test_sample_mean_weighs_dialogues_equally():
    vocab = 4
    logits = torch.zeros(2, 6, vocab)  # uniform: every supervised token costs ln(4)
    logits[0, :, 0] = 20.0  # row 0 predicts token 0 everywhere: its supervised tokens cost ~0
    labels = torch.tensor([[-100, -100, -100, -100, 0, 0],  # 2 cheap tokens
                           [-100, 1, 1, 1, 1, 1]])  # 5 expensive tokens
    token = causal_lm_loss(logits, labels, reduction="token")
    sample = causal_lm_loss(logits, labels, reduction="sample")
    assert math.isclose(token.item(), 5 * math.log(4) / 7, rel_tol=1e-4)
    assert math.isclose(sample.item(), math.log(4) / 2, rel_tol=1e-4)


def test_rows_without_supervision_are_ignored():
    logits = torch.zeros(2, 4, 3, requires_grad=True)
    labels = torch.tensor([[-100] * 4, [-100, 2, 2, 2]])
    loss = causal_lm_loss(logits, labels, reduction="sample")
    assert math.isclose(loss.item(), math.log(3), rel_tol=1e-5)
    loss.backward()
    assert logits.grad[0].abs().sum() == 0
