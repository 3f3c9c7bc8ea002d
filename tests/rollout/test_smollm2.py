"""Integration: the rollout decoder and engine on the real SmolLM2-135M-Instruct."""

import pytest
import torch

from tests.rollout.test_decoder import decoder_logits, hf_logits
from tests.rollout.test_engine import hf_greedy
from unift.models import load
from unift.rollout import make_engine
from unift.rollout.decoder import Decoder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm2():
    model, tokenizer = load("smollm2-135m-instruct")
    return model.eval(), tokenizer


def chat(tokenizer, question: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_decoder_matches_transformers(smollm2):
    model, tokenizer = smollm2
    prompt = chat(tokenizer, "What is 7 times 6?")
    cont = tokenizer("7 times 6 is 42.", add_special_tokens=False)["input_ids"]
    expected = torch.log_softmax(hf_logits(model, prompt, cont), -1)
    fp32 = decoder_logits(Decoder(model, torch.float32), [prompt], 1, torch.tensor([cont]))[0]
    torch.testing.assert_close(torch.log_softmax(fp32, -1), expected, atol=2e-3, rtol=1e-3)
    bf16 = decoder_logits(Decoder(model, torch.bfloat16), [prompt], 1, torch.tensor([cont]))[0]
    taken = torch.tensor(cont + [tokenizer.eos_token_id])[:, None]
    # log-probs of the actual tokens: bf16 weights and logits move them by a few 0.01
    assert (
        torch.log_softmax(bf16, -1).gather(1, taken) - expected.gather(1, taken)
    ).abs().max() < 0.3


def test_greedy_equals_transformers_generate(smollm2):
    model, tokenizer = smollm2
    prompt = chat(tokenizer, "Name the capital of France.")
    r = make_engine("hf", model, tokenizer, dtype="float32").generate(
        [prompt], 2, 16, temperature=0
    )
    expected = hf_greedy(model, prompt, 16)
    assert r.completion_ids[0] == r.completion_ids[1] == expected
    assert r.finished[0] == (expected[-1] == tokenizer.eos_token_id)
