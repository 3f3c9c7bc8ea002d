import math

import pytest
import torch

from unift.objectives.aggregate import average_logps, sequence_logps
from unift.objectives.dpo import dpo_loss, dpo_with_sft

# Pair 0: chosen logratio -1 - (-2) = +1, rejected logratio -3 - (-2) = -1 -> margin m = 2.
# Pair 1: chosen logratio -2 - (-2) = 0,  rejected logratio -1 - (-2) = +1 -> margin m = -1.
PC = torch.tensor([-1.0, -2.0])
PR = torch.tensor([-3.0, -1.0])
RC = torch.tensor([-2.0, -2.0])
RR = torch.tensor([-2.0, -2.0])


def test_sigmoid_by_hand():
    # beta 0.5: beta*m = 1 and -0.5.
    # -log sigma(1) = log(1 + e^-1) = 0.31326 ; -log sigma(-0.5) = log(1 + e^0.5) = 0.97408
    # mean = 0.64367
    loss, stats = dpo_loss(PC, PR, RC, RR, beta=0.5)
    assert loss.item() == pytest.approx((math.log1p(math.exp(-1)) + math.log1p(math.exp(0.5))) / 2)
    assert loss.item() == pytest.approx(0.64367, abs=1e-5)
    # r_c = 0.5 * [1, 0] -> mean 0.25 ; r_r = 0.5 * [-1, 1] -> mean 0 ; margin 0.25 ; 1 of 2 right
    assert stats["rewards/chosen"].item() == pytest.approx(0.25)
    assert stats["rewards/rejected"].item() == pytest.approx(0.0)
    assert stats["rewards/margin"].item() == pytest.approx(0.25)
    assert stats["rewards/accuracy"].item() == pytest.approx(0.5)
    assert all(not v.requires_grad and v.dim() == 0 for v in stats.values())


def test_label_smoothing_by_hand():
    # pair 0 only, beta 0.5, beta*m = 1, eps 0.1:
    # 0.9 * (-log sigma(1)) + 0.1 * (-log sigma(-1)) = 0.9 * 0.31326 + 0.1 * 1.31326 = 0.41326
    loss, _ = dpo_loss(PC[:1], PR[:1], RC[:1], RR[:1], beta=0.5, label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.41326, abs=1e-5)


def test_ipo_by_hand_on_averaged_logps():
    # chosen tokens: policy [-1, -1], ref [-2, -2]       -> averages -1, -2 -> logratio +1
    # rejected tokens: policy [-3, -3, -3], ref [-2]*3  -> averages -3, -2 -> logratio -1
    # margin 2; beta 0.5 -> target 1/(2 beta) = 1 -> loss (2 - 1)^2 = 1
    mask_c = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    mask_r = torch.ones(1, 3, dtype=torch.bool)
    pc, rc = torch.tensor([[-1.0, -1.0, 0.0]]), torch.tensor([[-2.0, -2.0, 0.0]])
    pr, rr = torch.full((1, 3), -3.0), torch.full((1, 3), -2.0)
    args = [average_logps(pc, mask_c), average_logps(pr, mask_r)]
    args += [average_logps(rc, mask_c), average_logps(rr, mask_r)]
    loss, _ = dpo_loss(args[0], args[1], args[2], args[3], beta=0.5, loss_type="ipo")
    assert loss.item() == pytest.approx(1.0)
    # With summed logps the margin is 2 - (-3) = 5 -> (5 - 1)^2 = 16: the convention matters.
    sums = [sequence_logps(pc, mask_c), sequence_logps(pr, mask_r)]
    sums += [sequence_logps(rc, mask_c), sequence_logps(rr, mask_r)]
    assert dpo_loss(sums[0], sums[1], sums[2], sums[3], 0.5, "ipo")[0].item() == pytest.approx(16.0)


def test_hinge_by_hand_and_zero_gradient_beyond_margin():
    # pair 0, m = 2. beta 0.25: relu(1 - 0.5) = 0.5.  beta 1: relu(1 - 2) = 0, no gradient.
    assert dpo_loss(PC[:1], PR[:1], RC[:1], RR[:1], 0.25, "hinge")[0].item() == pytest.approx(0.5)
    pc = PC[:1].clone().requires_grad_(True)
    loss, _ = dpo_loss(pc, PR[:1], RC[:1], RR[:1], 1.0, "hinge")
    loss.backward()
    assert loss.item() == 0.0 and pc.grad.item() == 0.0


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_gradient_raises_chosen_and_lowers_rejected(loss_type):
    # At margin 0 every variant wants a larger margin: d loss / d chosen < 0, / d rejected > 0.
    pc = torch.tensor([-2.0], requires_grad=True)
    pr = torch.tensor([-2.0], requires_grad=True)
    dpo_loss(pc, pr, RC[:1], RR[:1], 0.5, loss_type)[0].backward()
    assert pc.grad.item() < 0 < pr.grad.item()


def test_dpo_with_sft_weights_by_hand():
    # pair 0: sigmoid loss 0.31326 ; chosen tokens [-1, -2] (third is padding) -> NLL (1+2)/2 = 1.5
    # weights sigmoid 1, sft 0.5 -> 0.31326 + 0.75 = 1.06326
    tok = torch.tensor([[-1.0, -2.0, 50.0]])
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    w = {"sigmoid": 1.0, "sft": 0.5}
    loss, stats = dpo_with_sft(PC[:1], PR[:1], RC[:1], RR[:1], tok, mask, 0.5, weights=w)
    assert loss.item() == pytest.approx(1.06326, abs=1e-5)
    assert stats["loss/sft"].item() == pytest.approx(1.5)
    assert stats["nll"].item() == pytest.approx(1.5)
    assert stats["loss/sigmoid"].item() == pytest.approx(0.31326, abs=1e-5)
    # ipo (beta 0.5, m 2): (2 - 1)^2 = 1 ; hinge: relu(1 - 1) = 0 ; 2 * 1 + 3 * 0 = 2
    w = {"ipo": 2.0, "hinge": 3.0}
    assert dpo_with_sft(PC[:1], PR[:1], RC[:1], RR[:1], tok, mask, 0.5, w)[
        0
    ].item() == pytest.approx(2.0)


def test_errors():
    with pytest.raises(ValueError):
        dpo_loss(PC, PR, RC, RR, 0.5, loss_type="robust")
    with pytest.raises(ValueError):
        dpo_loss(PC, PR, RC, RR, 0.5, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError):
        dpo_with_sft(PC, PR, RC, RR, torch.zeros(2, 1), torch.ones(2, 1), 0.5, weights={"kto": 1.0})
