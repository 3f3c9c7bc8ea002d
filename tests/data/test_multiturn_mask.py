"""Multi-turn `messages`: the loss covers every assistant turn (TRL's `assistant_only_loss`) or,
with assistant_turns="last", only the last one. Positions worked out by hand from SmolLM2's
chat template and tokenizer (the tiny test model shares them)."""

import pytest
import torch

from unift.data.records import from_rows
from unift.data.tokenize import collate, render_turns, tokenize_pair
from unift.models import load, load_tokenizer
from unift.train.logprobs import token_logps

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]

# The rendered conversation, token by token (SmolLM2's template adds its default system turn):
#   <|im_start|> system \n You are a helpful ... Face <|im_end|> \n   21 tokens   positions  0-20
#   <|im_start|> user \n Hi <|im_end|> \n                            6 tokens   positions 21-26
#   <|im_start|> ass istant \n                                       4 tokens   positions 27-30
#   Hello <|im_end|>                                                 2 tokens   positions 31-32  trained
#   \n <|im_start|> user \n 2 + 2 ? <|im_end|> \n <|im_start|> ass istant \n
#                                                                   14 tokens   positions 33-46
#   4 <|im_end|>                                                     2 tokens   positions 47-48  trained
# The trailing "\n" after the last <|im_end|> is dropped: the sequence ends at the end of turn.
ALL_TURNS = [31, 32, 47, 48]
LAST_TURN = [47, 48]


def encoded(tok, turns, chat=CHAT, max_length=512):
    (record,) = from_rows([{"messages": chat}], "demonstration", assistant_turns=turns)
    return collate([tokenize_pair(tok, record.prompt, record.completion, max_length)], tok.pad_token_id)


def test_every_assistant_turn_carries_the_loss_by_default():
    tok = load_tokenizer()
    batch = encoded(tok, "all")
    assert batch.input_ids.shape == (1, 49)
    assert batch.loss_mask[0].nonzero().flatten().tolist() == ALL_TURNS
    assert tok.decode(batch.input_ids[0, 31:33]) == "Hello<|im_end|>"
    assert tok.decode(batch.input_ids[0, 47:49]) == "4<|im_end|>"
    # the sequence is the template's rendering, tokenised piece by piece, without its last "\n"
    rendered = tok.apply_chat_template(CHAT, tokenize=False)
    assert tok.decode(batch.input_ids[0]) == rendered.removesuffix("\n")


def test_last_turn_only_trains_the_final_reply_on_the_same_tokens():
    tok = load_tokenizer()
    every, last = encoded(tok, "all"), encoded(tok, "last")
    assert last.loss_mask[0].nonzero().flatten().tolist() == LAST_TURN
    assert torch.equal(every.input_ids, last.input_ids)  # only the mask differs


def test_logprob_positions_are_the_tokens_before_each_trained_token():
    """Position t of the log-probs predicts token t + 1: the objective reads 30, 31, 46, 47, and
    their values are the full forward pass's log-softmax at those tokens."""
    model, tok = load("tiny")
    batch = encoded(tok, "all")
    with torch.no_grad():
        out = token_logps(model, batch)
        logits = model(input_ids=batch.input_ids).logits[0, :-1].float()
    positions = [p - 1 for p in ALL_TURNS]
    assert out.mask[0].nonzero().flatten().tolist() == positions
    naive = logits.log_softmax(-1).gather(1, batch.input_ids[0, 1:, None])[:, 0]
    assert torch.allclose(out.logps[0, positions], naive[positions], atol=1e-4)


def test_single_turn_is_unchanged_by_the_option():
    tok = load_tokenizer()
    single = CHAT[:2]
    every, last = encoded(tok, "all", single), encoded(tok, "last", single)
    assert torch.equal(every.input_ids, last.input_ids) and torch.equal(every.loss_mask, last.loss_mask)
    assert every.loss_mask[0].nonzero().flatten().tolist() == [31, 32]


def test_tool_and_user_turns_are_context():
    tok = load_tokenizer()
    chat = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "call:weather()"},
            {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}]
    batch = encoded(tok, "all", chat)
    trained = batch.input_ids[0][batch.loss_mask[0]]
    assert tok.decode(trained) == "call:weather()<|im_end|>Sunny.<|im_end|>"


def test_an_opening_assistant_greeting_is_context():
    tok = load_tokenizer()
    chat = [{"role": "assistant", "content": "Welcome!"}, *CHAT]
    batch = encoded(tok, "all", chat)
    assert tok.decode(batch.input_ids[0][batch.loss_mask[0]]) == "Hello<|im_end|>4<|im_end|>"


def test_truncation_cuts_the_mask_with_the_tokens():
    tok = load_tokenizer()
    # 31 prompt + 18 completion tokens into 30: the prompt keeps its last 30 // 2 = 15, the
    # completion its first 15 (Hello <|im_end|> at 15-16; the last turn, completion tokens 16-17, is cut)
    batch = encoded(tok, "all", max_length=30)
    assert batch.input_ids.shape == (1, 30)
    assert batch.loss_mask[0].nonzero().flatten().tolist() == [15, 16]


def test_a_template_that_rewrites_earlier_turns_is_an_error():
    tok = load_tokenizer()
    # renders an assistant turn in full only while it is the last message (as templates that drop
    # earlier turns' reasoning do): messages[:2] is then no prefix of messages[:4]
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n"
                         "{% if m.role == 'assistant' and not loop.last %}...{% else %}{{ m.content }}{% endif %}"
                         "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(ValueError, match=r"renders messages\[:3\] differently.*assistant_turns: last"):
        render_turns(tok, CHAT[:1], CHAT[1:])
    assert encoded(tok, "last").loss_mask.sum() == 2  # the last turn alone still works
