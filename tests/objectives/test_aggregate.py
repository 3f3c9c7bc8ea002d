import pytest
import torch

from unift.objectives.aggregate import aggregate, average_logps, sequence_logps

# Two sequences of unequal length; 99 marks padding, which must never count.
VALUES = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0]])  # (B=2, T=4)
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)


def test_sequence_and_average_logps_by_hand():
    logps = torch.tensor([[-1.0, -2.0, -3.0, 5.0], [-4.0, 7.0, 7.0, 7.0]])
    # sums: -1-2-3 = -6 ; -4.  averages: -6/3 = -2 ; -4/1 = -4
    assert torch.allclose(sequence_logps(logps, MASK), torch.tensor([-6.0, -4.0]))
    assert torch.allclose(average_logps(logps, MASK), torch.tensor([-2.0, -4.0]))


@pytest.mark.parametrize(
    "mode, normalizer, expected",
    [
        # all active tokens: (1+2+3+4) / 4 tokens = 2.5  (DAPO)
        ("token_mean", None, 2.5),
        # per sequence: 6/3 = 2, 4/1 = 4; mean over sequences = 3.0  (GRPO)
        ("sequence_mean", None, 3.0),
        # sum 10 / (B * max_len = 2 * 4 = 8) = 1.25  (Dr. GRPO)
        ("constant", 8, 1.25),
        # per-sequence sums 6 and 4; mean = 5.0
        ("sequence_sum", None, 5.0),
        # explicit global token count, e.g. 10 tokens over all processes: 10 / 10 = 1.0
        ("token_mean", 10, 1.0),
    ],
)
def test_aggregate_modes_by_hand(mode, normalizer, expected):
    assert aggregate(VALUES, MASK, mode, normalizer).item() == pytest.approx(expected)


def test_float_mask_equals_bool_mask():
    for mode, norm in [("token_mean", None), ("sequence_mean", None), ("constant", 8)]:
        a = aggregate(VALUES, MASK, mode, norm)
        b = aggregate(VALUES, MASK.float(), mode, norm)
        assert torch.equal(a, b)


def test_padding_values_change_nothing_even_inf_and_nan():
    x = VALUES.clone().requires_grad_(True)
    weird = torch.where(MASK, VALUES, torch.tensor([float("inf")]))
    weird[1, 3] = float("nan")
    for mode, norm in [
        ("token_mean", None),
        ("sequence_mean", None),
        ("constant", 8),
        ("sequence_sum", None),
    ]:
        assert (
            aggregate(weird, MASK, mode, norm).item() == aggregate(VALUES, MASK, mode, norm).item()
        )
    # and padded positions receive exactly zero gradient
    aggregate(x, MASK, "token_mean").backward()
    assert torch.equal(x.grad[~MASK], torch.zeros(4))


def test_sharded_token_mean_with_global_normalizer_equals_full_batch():
    # Two "processes" each hold one sequence; DDP averages their gradients, so each passes
    # normalizer = global tokens / world size = 4 / 2 = 2. Averaging the shard losses then
    # gives the full-batch token mean: ((1+2+3)/2 + 4/2) / 2 = (3 + 2) / 2 = 2.5.
    shards = [
        aggregate(VALUES[i : i + 1], MASK[i : i + 1], "token_mean", normalizer=2) for i in range(2)
    ]
    assert (sum(shards) / 2).item() == pytest.approx(2.5)


def test_empty_sequence_counts_in_sequence_mean_and_empty_batch_is_zero():
    mask = MASK.clone()
    mask[1] = False
    # sequence 0: 6/3 = 2; sequence 1 has no token: contributes 0 but counts: (2 + 0) / 2 = 1
    assert aggregate(VALUES, mask, "sequence_mean").item() == pytest.approx(1.0)
    assert aggregate(VALUES, torch.zeros_like(MASK), "token_mean").item() == 0.0


def test_errors():
    with pytest.raises(ValueError, match="normalizer"):
        aggregate(VALUES, MASK, "constant")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(VALUES, MASK, "mean")
