"""The "hf" rollout engine on a tiny random Llama with the real tokenizer: greedy equals
transformers' generate, log-probs equal a teacher-forced forward pass, EOS / stop strings /
max_new_tokens, seeds, group order, chunking, compaction, sync (and LoRA), the fallback path."""

import copy

import pytest
import torch

from unift.models import apply_lora, load
from unift.rollout import Rollouts, make_engine


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load("tiny")
    with torch.no_grad():  # larger weights than the init: varied, peaked next-token distributions
        g = torch.Generator().manual_seed(0)
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def prompts(tiny):
    _, tokenizer = tiny
    texts = ["What is 2+2?", "Name a colour.", "Write a haiku about the sea, please."]
    out = []
    for text in texts:  # ragged lengths: the prefill is left-padded
        chat = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        out.append(tokenizer(chat, add_special_tokens=False)["input_ids"])
    assert len({len(p) for p in out}) == 3
    return out


@pytest.fixture(scope="module")
def engine(tiny):
    model, tokenizer = tiny
    return make_engine("hf", model, tokenizer, dtype="float32")


def hf_greedy(model, prompt, n):
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=n,
        do_sample=False,
        top_k=None,
        top_p=None,
        temperature=None,
        pad_token_id=2,
        eos_token_id=2,
    )
    return out[0, len(prompt) :].tolist()


def teacher_forced_logprobs(model, prompt, completion, temperature=1.0):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float() / temperature
    steps = torch.log_softmax(logits, -1)[len(prompt) - 1 : len(prompt) + len(completion) - 1]
    return steps.gather(1, torch.tensor(completion)[:, None])[:, 0]


def test_greedy_equals_transformers_generate(tiny, prompts, engine):
    model, _ = tiny
    r = engine.generate(prompts, num_samples=2, max_new_tokens=12, temperature=0)
    assert isinstance(r, Rollouts) and len(r) == 6
    for i, prompt in enumerate(prompts):
        expected = hf_greedy(model, prompt, 12)
        assert r.completion_ids[2 * i] == expected
        assert r.completion_ids[2 * i + 1] == expected  # greedy: the whole group agrees


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_teacher_forced_forward(tiny, prompts, engine, temperature):
    model, _ = tiny
    r = engine.generate(prompts, num_samples=2, max_new_tokens=10, temperature=temperature, seed=0)
    for prompt, completion, logprobs in zip(
        r.prompt_ids, r.completion_ids, r.logprobs, strict=True
    ):
        assert len(logprobs) == len(completion)
        expected = teacher_forced_logprobs(model, prompt, completion, temperature)
        torch.testing.assert_close(torch.tensor(logprobs), expected, atol=1e-4, rtol=1e-4)


def test_bf16_logprobs_are_close(tiny, prompts):
    # bf16 logits of magnitude ~30 are rounded to steps of 0.125: log-probs move by ~0.05
    model, tokenizer = tiny
    r = make_engine("hf", model, tokenizer).generate(prompts[:1], 2, 10, seed=0)
    for prompt, completion, logprobs in zip(
        r.prompt_ids, r.completion_ids, r.logprobs, strict=True
    ):
        diff = torch.tensor(logprobs) - teacher_forced_logprobs(model, prompt, completion)
        assert diff.abs().mean() < 0.1 and diff.abs().max() < 0.5


def test_groups_are_contiguous_and_counts_add_up(prompts, engine):
    r = engine.generate(prompts, num_samples=3, max_new_tokens=5, seed=1)
    assert r.prompt_ids == [p for p in prompts for _ in range(3)]
    assert r.num_generated_tokens == sum(len(c) for c in r.completion_ids) == 9 * 5
    assert r.finished == [False] * 9  # all hit max_new_tokens
    assert r.seconds > 0


def test_seed_reproducibility(prompts, engine):
    a = engine.generate(prompts, 2, 8, seed=123)
    b = engine.generate(prompts, 2, 8, seed=123)
    c = engine.generate(prompts, 2, 8, seed=124)
    assert a.completion_ids == b.completion_ids and a.logprobs == b.logprobs
    assert a.completion_ids != c.completion_ids
    assert a.completion_ids[0] != a.completion_ids[1]  # samples of one group differ
    torch.manual_seed(7)
    d = engine.generate(prompts, 2, 8)
    torch.manual_seed(7)
    assert (
        engine.generate(prompts, 2, 8).completion_ids == d.completion_ids
    )  # seed=None: global RNG


def test_eos_stops_a_row_and_is_kept(tiny, prompts):
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    greedy = hf_greedy(model, prompts[0], 12)
    model.generation_config.eos_token_id = [2, greedy[4]]  # pretend the 5th token is an EOS
    r = make_engine("hf", model, tokenizer, dtype="float32").generate(prompts, 1, 12, temperature=0)
    assert r.completion_ids[0] == greedy[: greedy.index(greedy[4]) + 1]
    assert r.finished[0]
    assert r.completion_ids[1] == hf_greedy(model, prompts[1], 12)[: len(r.completion_ids[1])]


def test_stop_string_cuts_text_and_ids(prompts, engine, tiny):
    _, tokenizer = tiny
    full = engine.generate(prompts[:1], 1, 16, temperature=0)
    text = full.texts[0]
    prefix = tokenizer.decode(full.completion_ids[0][:6], skip_special_tokens=True)
    stop = text[len(prefix) - 3 : len(prefix)]  # ends inside token 6
    cut = text[: text.index(stop) + len(stop)]
    r = engine.generate(prompts[:1], 1, 16, temperature=0, stop_strings=[stop])
    assert r.texts[0] == cut and r.finished[0]
    ids = r.completion_ids[0]
    assert ids == full.completion_ids[0][: len(ids)]
    assert stop in tokenizer.decode(ids) and stop not in tokenizer.decode(ids[:-1])


def test_chunking_compaction_and_growth_do_not_change_greedy_outputs(tiny, prompts):
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    # EOS tokens that finish rows at different steps, so rows drop out of the batch
    model.generation_config.eos_token_id = [2] + [
        hf_greedy(model, p, 12)[k] for p, k in zip(prompts, (3, 7, 11), strict=True)
    ]
    reference = make_engine(
        "hf", model, tokenizer, dtype="float32", compact_fraction=2.0, grow_chunk=64
    )
    expected = reference.generate(prompts, 2, 12, temperature=0)
    assert len({len(c) for c in expected.completion_ids}) > 1
    for kw in (dict(compact_fraction=0.1, grow_chunk=3), dict(max_batch_size=3, grow_chunk=5)):
        engine = make_engine("hf", model, tokenizer, dtype="float32", **kw)
        r = engine.generate(prompts, 2, 12, temperature=0)
        assert r.completion_ids == expected.completion_ids
        assert r.finished == expected.finished
        torch.testing.assert_close(
            torch.tensor(sum(r.logprobs, [])), torch.tensor(sum(expected.logprobs, []))
        )
        if "compact_fraction" in kw:
            assert engine.stats["compactions"] >= 2  # rows really left the batch


def test_sync_picks_up_new_weights_and_lora(tiny, prompts):
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    engine = make_engine("hf", model, tokenizer, dtype="float32")
    before = engine.generate(prompts[:1], 1, 8, temperature=0).completion_ids[0]
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(-3.0)
    assert engine.generate(prompts[:1], 1, 8, temperature=0).completion_ids[0] == before  # not yet
    engine.sync(model)
    r = engine.generate(prompts[:1], 1, 8, temperature=0, seed=0)
    assert r.completion_ids[0] == hf_greedy(model, prompts[0], 8) != before

    lora = apply_lora(
        model, r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"]
    )
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p))
    engine.sync(lora)
    r = engine.generate(prompts[:1], 1, 8, temperature=1.0, seed=0)
    expected = teacher_forced_logprobs(lora.eval(), r.prompt_ids[0], r.completion_ids[0])
    torch.testing.assert_close(torch.tensor(r.logprobs[0]), expected, atol=1e-4, rtol=1e-4)


def test_transformers_generate_fallback_agrees(tiny, prompts, engine):
    model, tokenizer = tiny
    fallback = make_engine("hf", model, tokenizer, dtype="float32", impl="generate")
    assert fallback.impl == "generate"
    ours = engine.generate(prompts, 1, 10, temperature=0)
    theirs = fallback.generate(prompts, 1, 10, temperature=0)
    assert theirs.completion_ids == ours.completion_ids
    torch.testing.assert_close(
        torch.tensor(sum(theirs.logprobs, [])),
        torch.tensor(sum(ours.logprobs, [])),
        atol=1e-4,
        rtol=1e-4,
    )
    stop = ours.texts[0][5:8]
    cut = fallback.generate(prompts[:1], 1, 10, temperature=0, stop_strings=[stop])
    assert cut.texts[0].endswith(stop) and cut.finished[0]


def test_backend_errors(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="unknown rollout backend"):
        make_engine("tgi", model, tokenizer)
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install vllm"):
            make_engine("vllm", model, tokenizer)
