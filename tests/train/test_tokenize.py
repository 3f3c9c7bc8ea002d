from unift.data.tokenize import collate, render_completion, tokenize_pair
from unift.models import load_tokenizer


def test_loss_mask_covers_exactly_the_completion_tokens():
    tok = load_tokenizer()
    prompt = [{"role": "user", "content": "What is 2 + 2?"}]
    item = tokenize_pair(tok, prompt, [{"role": "assistant", "content": "4"}], max_length=512)
    batch = collate([item, tokenize_pair(tok, "raw prompt", " answer", 512)], tok.pad_token_id)
    # the completion is "4<|im_end|>": two tokens, masked; the prompt ends with the assistant header
    assert tok.decode(item.completion_ids) == "4<|im_end|>"
    assert tok.decode(item.prompt_ids).endswith("<|im_start|>assistant\n")
    row = batch.input_ids[0][batch.loss_mask[0]]
    assert row.tolist() == item.completion_ids
    assert int(batch.loss_mask[1].sum()) == len(tokenize_pair(tok, "raw prompt", " answer", 512).completion_ids)
    # padding is neither attended nor in the loss
    assert not batch.loss_mask[batch.attention_mask == 0].any()


def test_string_completion_gets_end_of_turn_once():
    tok = load_tokenizer()
    assert render_completion(tok, "p", "x") == "x<|im_end|>"
    assert render_completion(tok, "p", "x<|im_end|>") == "x<|im_end|>"


def test_truncation_keeps_prompt_end_and_completion_start():
    tok = load_tokenizer()
    item = tokenize_pair(tok, "a " * 300, " b" * 300, max_length=100)
    assert item.truncated
    assert len(item.prompt_ids) + len(item.completion_ids) == 100
    assert len(item.prompt_ids) == 50
