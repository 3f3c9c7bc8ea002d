import pytest
import torch

from unift.objectives.aggregate import sequence_logps
from unift.objectives.sft import sft_nll
from unift.objectives.uft_implicit import token_implicit_rewards, uft_implicit_bce, uft_implicit_mse


def test_uft_implicit_mse_by_hand():
    # logratio = 1.0, beta 0.5 -> r = 0.5, sigma(0.5) = 0.62246 -> loss = (0.62246 - 1)^2 = 0.14254
    loss, stats = uft_implicit_mse(torch.tensor([-2.0]), torch.tensor([-3.0]), beta=0.5)
    assert loss.item() == pytest.approx(0.14254, abs=1e-5)
    assert stats["rewards/implicit"].item() == pytest.approx(0.5)
    assert stats["score/pred"].item() == pytest.approx(0.62246, abs=1e-5)


def test_uft_implicit_bce_by_hand():
    # same r = 0.5: -log sigma(0.5) = -log 0.62246 = 0.47408
    loss, _ = uft_implicit_bce(torch.tensor([-2.0]), torch.tensor([-3.0]), beta=0.5)
    assert loss.item() == pytest.approx(0.47408, abs=1e-5)


def test_gradients_by_hand_and_sign():
    # d/dx (sigma(bx) - 1)^2 = -2 b s (1 - s)^2 = -2 * 0.5 * 0.62246 * 0.37754^2 = -0.08872
    # d/dx -log sigma(bx)    = -b (1 - s)       = -0.5 * 0.37754              = -0.18877
    # Both negative: a gradient step raises log pi(y|x), as SFT does.
    for fn, expected in ((uft_implicit_mse, -0.08872), (uft_implicit_bce, -0.18877)):
        policy = torch.tensor([-2.0], requires_grad=True)
        fn(policy, torch.tensor([-3.0]), 0.5)[0].backward()
        assert policy.grad.item() == pytest.approx(expected, abs=1e-5)


def test_implicit_losses_saturate_while_nll_does_not():
    # As the demonstration's log-ratio x grows, |dL/dx| shrinks towards 0 for MSE and BCE;
    # the NLL gradient d(-log pi)/d log pi stays -1 whatever pi_ref says.
    grads = {"mse": [], "bce": [], "nll": []}
    for x in (0.0, 2.0, 5.0, 10.0):
        policy = torch.tensor([x - 4.0], requires_grad=True)  # ref = -4 -> logratio x
        for name, fn in (("mse", uft_implicit_mse), ("bce", uft_implicit_bce)):
            (g,) = torch.autograd.grad(fn(policy, torch.tensor([-4.0]), 1.0)[0], policy)
            grads[name].append(abs(g.item()))
        tok = policy.view(1, 1)
        (g,) = torch.autograd.grad(sft_nll(tok, torch.ones(1, 1), "sequence_sum")[0], policy)
        grads["nll"].append(abs(g.item()))
    for name in ("mse", "bce"):
        assert grads[name] == sorted(grads[name], reverse=True)
        assert grads[name][-1] < 1e-3 * grads[name][0]
    assert grads["nll"] == [1.0, 1.0, 1.0, 1.0]


def test_token_implicit_rewards_sum_to_sequence_reward():
    tok = torch.tensor([[-1.0, -2.0, 9.0]])
    ref = torch.tensor([[-1.5, -1.0, -9.0]])
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    # beta 0.1: per token 0.1 * [0.5, -1.0, (pad) 0] -> [0.05, -0.1, 0]; sum -0.05
    per_token = token_implicit_rewards(tok, ref, mask, beta=0.1)
    assert torch.allclose(per_token, torch.tensor([[0.05, -0.1, 0.0]]))
    r = 0.1 * (sequence_logps(tok, mask) - sequence_logps(ref, mask))
    assert torch.allclose(per_token.sum(-1), r)
