"""Sampling: inverse-CDF draws, temperature-scaled log-probs, top-p worked by hand, stop strings."""

import math

import pytest
import torch

from unift.rollout.sampling import StopStrings, inverse_cdf, sample


def frequencies(tokens: torch.Tensor, size: int) -> torch.Tensor:
    return torch.bincount(tokens, minlength=size).double() / len(tokens)


def test_inverse_cdf_matches_weights_across_blocks_and_padding():
    # V = 300 is not a multiple of the 256-token block: the last block is padded with zeros.
    weights = torch.zeros(300)
    weights[[3, 255, 256, 299]] = torch.tensor([0.4, 0.3, 0.2, 0.1])
    g = torch.Generator().manual_seed(0)
    tokens = inverse_cdf(weights.expand(40_000, 300).contiguous() * 7.0, g)  # unnormalised is fine
    freq = frequencies(tokens, 300)
    assert set(tokens.unique().tolist()) <= {3, 255, 256, 299}  # never a zero-weight token
    assert torch.allclose(
        freq[[3, 255, 256, 299]], torch.tensor([0.4, 0.3, 0.2, 0.1]).double(), atol=0.01
    )


def test_sample_logprob_is_log_softmax_of_tempered_logits():
    logits = torch.randn(8, 1000, generator=torch.Generator().manual_seed(1)) * 3
    g = torch.Generator().manual_seed(0)
    tokens, logprobs = sample(logits, 0.7, 1.0, g)
    expected = torch.log_softmax(logits / 0.7, dim=-1).gather(1, tokens[:, None])[:, 0]
    assert torch.allclose(logprobs, expected, atol=1e-5)


def test_greedy_is_argmax_with_untempered_logprob():
    logits = torch.randn(4, 500, generator=torch.Generator().manual_seed(2))
    tokens, logprobs = sample(logits, 0.0, 1.0, torch.Generator())
    assert torch.equal(tokens, logits.argmax(-1))
    assert torch.allclose(logprobs, torch.log_softmax(logits, -1).max(-1).values, atol=1e-6)


def test_sampling_frequencies_follow_the_tempered_distribution():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    g = torch.Generator().manual_seed(3)
    tokens, _ = sample(logits.expand(40_000, 4), 2.0, 1.0, g)
    expected = torch.softmax(logits / 2.0, -1).double()  # [0.455, 0.276, 0.167, 0.102]
    assert torch.allclose(frequencies(tokens, 4), expected, atol=0.01)


def test_top_p_by_hand():
    # p = [0.5, 0.3, 0.15, 0.05], top_p = 0.7: mass before token 1 is 0.5 < 0.7 (kept), before
    # token 2 it is 0.8 >= 0.7 (dropped). Nucleus {0, 1}, renormalised: [0.625, 0.375].
    # The returned log-prob is NOT renormalised: log 0.5 or log 0.3.
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    g = torch.Generator().manual_seed(4)
    tokens, logprobs = sample(logits.expand(40_000, 4), 1.0, 0.7, g)
    freq = frequencies(tokens, 4)
    assert freq[2] == 0 and freq[3] == 0
    assert abs(freq[0].item() - 0.625) < 0.01
    assert torch.allclose(logprobs, torch.tensor([math.log(0.5), math.log(0.3)])[tokens], atol=1e-6)


def test_top_p_larger_than_the_candidate_set_uses_a_full_sort():
    # A flat distribution over 1000 tokens: the 0.5-nucleus holds 500 tokens (> 64 candidates).
    logits = -torch.arange(1000.0) * 1e-3  # strictly decreasing, nearly flat
    probs = torch.softmax(logits.double(), -1)
    before = probs.cumsum(-1) - probs
    nucleus = int((before < 0.5).sum())
    assert nucleus > 64
    g = torch.Generator().manual_seed(5)
    tokens, _ = sample(logits.expand(5_000, 1000), 1.0, 0.5, g)
    assert int(tokens.max()) < nucleus and int(tokens.max()) > nucleus - 20


def test_stop_strings_cut_at_the_earliest_ending_stop():
    stops = StopStrings(tokenizer=None, stop_strings=["</answer>", "\n\n", ""])
    assert stops.cut("x <answer>4</answer> more") == ("x <answer>4</answer>", True)
    assert stops.cut("a\n\nb</answer>") == ("a\n\n", True)
    assert stops.cut("no stop here") == ("no stop here", False)
    assert not StopStrings(None, [])


@pytest.fixture(scope="module")
def tokenizer():
    from unift.models import load_tokenizer

    return load_tokenizer()


def test_stop_strings_found_in_the_token_tail(tokenizer):
    stops = StopStrings(tokenizer, ["</answer>"])
    ids = tokenizer("Let me think. <answer>42</answer>", add_special_tokens=False)["input_ids"]
    hits = [stops.hits([ids[: n + 1]])[0] for n in range(len(ids))]
    first = hits.index(True)
    assert tokenizer.decode(ids[: first + 1]).endswith("</answer>")
    assert not any(hits[:first])
