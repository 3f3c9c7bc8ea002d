"""The lean decoder against the transformers forward pass: Llama, Qwen2 (q/k/v bias), Qwen3 (q/k
norm), left padding, shared prompts, LoRA merge. The real SmolLM2: test_smollm2.py."""

import copy

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from unift.rollout.decoder import Decoder, can_prepack, prompt_layout, unsupported_reason

SMALL = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


def random_model(cls, config_cls, seed=0, **extra):
    torch.manual_seed(seed)
    model = cls(config_cls(**SMALL, **extra)).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than the default init: peaked, varied logits
            p.add_(torch.randn_like(p) * 0.2)
    return model


def decoder_logits(
    dec: Decoder, prompts: list[list[int]], samples: int, continuation: torch.Tensor
):
    """Prefill `prompts` once, then feed `continuation` (P * samples, n) one token per step.
    Returns logits (P * samples, n + 1, V): after the prompt, then after each fed token."""
    P = len(prompts)
    ids, valid, shared = prompt_layout(prompts)
    Lp = ids.shape[1]
    cache, hidden = dec.prefill(ids, valid, max_tokens=8, shared=shared)  # several prefill chunks
    row_prompt = [p for p in range(P) for _ in range(samples)]
    rows = dec.new_rows(cache, row_prompt, continuation.shape[1])
    positions = valid.sum(1)[row_prompt]
    out = [dec.logits(hidden)[row_prompt]]
    for j in range(continuation.shape[1]):
        rows.mask[..., Lp + rows.length] = 0.0
        out.append(dec.logits(dec.decode(continuation[:, j], positions + j, rows)))
    return torch.stack(out, dim=1).float()


def hf_logits(model, prompt: list[int], continuation: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([prompt + continuation])).logits[0].float()
    return logits[len(prompt) - 1 :]  # (n + 1, V)


@pytest.mark.parametrize(
    "cls,config_cls,extra",
    [
        (LlamaForCausalLM, LlamaConfig, {}),
        (Qwen2ForCausalLM, Qwen2Config, {}),
        (Qwen3ForCausalLM, Qwen3Config, {"head_dim": 16}),
        (LlamaForCausalLM, LlamaConfig, {"tie_word_embeddings": False}),
    ],
    ids=["llama", "qwen2-bias", "qwen3-qknorm", "llama-untied"],
)
def test_decoder_logits_match_transformers(cls, config_cls, extra):
    model = random_model(cls, config_cls, **extra)
    if config_cls is Qwen2Config:
        assert model.model.layers[0].self_attn.q_proj.bias is not None
    dec = Decoder(model, torch.float32)
    prompts = [[5, 17, 33, 2, 90, 11, 7], [250, 3, 8], [41, 42, 43, 44, 45]]  # ragged: left padding
    samples = 2
    continuation = torch.randint(
        0, 300, (len(prompts) * samples, 4), generator=torch.Generator().manual_seed(0)
    )
    ours = decoder_logits(dec, prompts, samples, continuation)
    for r in range(len(prompts) * samples):
        expected = hf_logits(model, prompts[r // samples], continuation[r].tolist())
        torch.testing.assert_close(ours[r], expected, atol=1e-4, rtol=1e-4)


def test_prompt_layout_puts_the_common_prefix_first():
    ids, valid, shared = prompt_layout([[7, 8, 9, 1], [7, 8, 2, 3, 4], [7, 8, 9]], pad_id=0)
    # common prefix [7, 8] (at most min length - 1 = 2), then each rest right-aligned
    assert shared == 2
    assert ids.tolist() == [[7, 8, 0, 9, 1], [7, 8, 2, 3, 4], [7, 8, 0, 0, 9]]
    assert valid.tolist() == [[1, 1, 0, 1, 1], [1, 1, 1, 1, 1], [1, 1, 0, 0, 1]]
    ids, valid, shared = prompt_layout([[7, 8, 9, 1], [7, 8, 2, 3, 4], [7, 8, 9]], share=False)
    assert shared == 0 and ids.tolist() == [[0, 7, 8, 9, 1], [7, 8, 2, 3, 4], [0, 0, 7, 8, 9]]
    assert prompt_layout([[5, 6]])[2] == 0  # one prompt: nothing to share
    ids, _, shared = prompt_layout([[5, 6], [5, 6]])  # equal prompts keep one token of their own
    assert ids.tolist() == [[5, 6], [5, 6]] and shared == 1


def test_shared_prefix_is_encoded_once_with_the_same_logits():
    model = random_model(LlamaForCausalLM, LlamaConfig)
    dec = Decoder(model, torch.float32)
    head = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]  # longer than a prefill chunk (8)
    prompts = [head + [1, 2], head + [3], head + [4, 5, 6, 7]]
    continuation = torch.tensor([[30, 31], [32, 33], [34, 35]])
    ours = decoder_logits(dec, prompts, 1, continuation)
    for r, prompt in enumerate(prompts):
        torch.testing.assert_close(ours[r], hf_logits(model, prompt, continuation[r].tolist()),
                                   atol=1e-4, rtol=1e-4)


def test_bf16_decoder_is_close_to_fp32_transformers():
    model = random_model(LlamaForCausalLM, LlamaConfig)
    ours = decoder_logits(
        Decoder(model, torch.bfloat16), [[1, 2, 3, 4, 5]], 1, torch.tensor([[6, 7, 8]])
    )
    expected = hf_logits(model, [1, 2, 3, 4, 5], [6, 7, 8])
    assert (torch.log_softmax(ours[0], -1) - torch.log_softmax(expected, -1)).abs().max() < 0.15


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_prepacked_weights_give_the_same_logits(tied, dtype):
    """oneDNN's blocked weight layout changes the kernel, not the product: the same logits as the
    plain weights (bf16: bit for bit; fp32: up to summation order), also after a sync (which must
    re-pack). The fp32 decoder's logits against transformers: the tests above (1e-4)."""
    if not can_prepack(dtype):
        pytest.skip(f"no oneDNN {dtype} linear on this build/CPU")
    model = random_model(LlamaForCausalLM, LlamaConfig, tie_word_embeddings=tied)
    packed, plain = Decoder(model, dtype, pack=True), Decoder(model, dtype, pack=False)
    assert packed.layers[0].packed and not plain.layers[0].packed
    args = ([[5, 17, 33, 2, 90], [250, 3]], 2, torch.tensor([[6, 7], [8, 9], [10, 11], [12, 13]]))
    tol = 0 if dtype == torch.bfloat16 else 2e-5
    torch.testing.assert_close(decoder_logits(packed, *args), decoder_logits(plain, *args), atol=tol, rtol=tol)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(2.0)
    packed.sync(model)
    plain.sync(model)
    torch.testing.assert_close(decoder_logits(packed, *args), decoder_logits(plain, *args), atol=tol, rtol=tol)


def test_sync_copies_new_weights_and_merges_lora():
    from unift.models import apply_lora

    model = random_model(LlamaForCausalLM, LlamaConfig)
    dec = Decoder(model, torch.float32)
    prompt, cont = [3, 1, 4, 1, 5], [9, 2, 6]
    peft_model = apply_lora(
        copy.deepcopy(model),
        r=4,
        alpha=8,
        dropout=0.0,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:  # B = 0 at init: make the adapters matter
                p.copy_(torch.randn_like(p) * 0.5)
    peft_model.eval()
    merged_expected = hf_logits(peft_model, prompt, cont)
    assert (merged_expected - hf_logits(model, prompt, cont)).abs().max() > 0.1
    dec.sync(peft_model)
    torch.testing.assert_close(
        decoder_logits(dec, [prompt], 1, torch.tensor([cont]))[0],
        merged_expected,
        atol=1e-4,
        rtol=1e-4,
    )
    with peft_model.disable_adapter():  # disabled adapters are not merged
        dec.sync(peft_model)
    torch.testing.assert_close(
        decoder_logits(dec, [prompt], 1, torch.tensor([cont]))[0],
        hf_logits(model, prompt, cont),
        atol=1e-4,
        rtol=1e-4,
    )


def test_unsupported_architectures_are_named():
    assert unsupported_reason(LlamaConfig(**SMALL)) is None
    assert "gpt2" in unsupported_reason(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    assert "sliding" in unsupported_reason(Qwen2Config(**SMALL, use_sliding_window=True))
    with pytest.raises(ValueError, match="gpt2"):
        Decoder(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)))
