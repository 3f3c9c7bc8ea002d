import pytest
import torch

from unift.objectives.sft import sft_nll

LOGPS = torch.tensor([[-1.0, -2.0, 3.0], [-0.5, 8.0, 8.0]])  # positive values are padding
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)


def test_sft_nll_by_hand():
    # token_mean: (1 + 2 + 0.5) / 3 tokens = 1.1667
    loss, stats = sft_nll(LOGPS, MASK)
    assert loss.item() == pytest.approx(3.5 / 3)
    assert stats["nll"].item() == pytest.approx(3.5 / 3)
    assert stats["tokens"].item() == 3
    # sequence_sum: -log pi(y|x) = 3 and 0.5; mean over sequences = 1.75; "nll" stays per token
    loss, stats = sft_nll(LOGPS, MASK, reduction="sequence_sum")
    assert loss.item() == pytest.approx(1.75)
    assert stats["nll"].item() == pytest.approx(3.5 / 3)


def test_sft_padding_changes_nothing():
    other = torch.where(MASK, LOGPS, torch.tensor(-1e6))
    assert sft_nll(other, MASK)[0].item() == sft_nll(LOGPS, MASK)[0].item()


def test_sft_gradient_step_raises_target_logp():
    # A tiny "model": free logits (B, T, V); one SGD step on the NLL must raise the
    # log-prob of every target token (a flipped sign would lower them).
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, requires_grad=True)
    targets = torch.tensor([[1, 2, 3], [4, 0, 1]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)

    def token_logps(lg):
        return lg.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)

    before = token_logps(logits).detach()
    sft_nll(token_logps(logits), mask)[0].backward()
    after = token_logps(logits - 1.0 * logits.grad).detach()
    assert (after[mask] > before[mask]).all()
    assert torch.equal(after[~mask], before[~mask])  # the padded target got no gradient


def test_sft_rejects_unknown_reduction():
    with pytest.raises(ValueError):
        sft_nll(LOGPS, MASK, reduction="sequence_mean")
