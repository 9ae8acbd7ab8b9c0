import random

import pytest
from transmitter_fixtures import HISTORY, PERSONA, smollm2_tokenizer

from models.prompt import PromptFormatter


@pytest.fixture(scope="module")
def tok():
    return smollm2_tokenizer()


def _is_suffix(part, whole):
    return len(part) <= len(whole) and whole[len(whole) - len(part):] == part


def test_chatml_layout_and_speaker_markers(tok):
    fmt = PromptFormatter(tok)
    assert fmt.style.name == "chatml"
    text = tok.decode(fmt.encode_context(PERSONA, HISTORY))
    assert text.startswith("<|im_start|>system\n") and all(p in text for p in PERSONA)
    # the last history entry is the partner's (user); turns alternate backwards from there
    assert "<|im_start|>user\nnice, where did you go?<|im_end|>" in text
    assert "<|im_start|>assistant\ngreat, just back from a long hike.<|im_end|>" in text
    assert "<|im_start|>user\nhi! how are you today?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert tok.decode(fmt.encode_context(PERSONA, HISTORY[1:])).count("<|im_start|>user") == 1


@pytest.mark.parametrize("style", ["chatml", "plain"])
def test_truncation_properties(tok, style):
    """Random personas/histories/budgets: persona intact, history is a left-cut suffix within budget."""
    rng = random.Random(0)
    words = ["the", "cat", "likes", "long", "walks", "on", "sunny", "days", "and", "I", "play", "guitar", "every", "night", "with", "friends"]
    for _ in range(40):
        persona = [" ".join(rng.choices(words, k=rng.randint(3, 12))) + "." for _ in range(rng.randint(1, 5))]
        history = [" ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(rng.randint(0, 12))]
        budget = rng.randint(1, 200)
        fmt, full = PromptFormatter(tok, budget, style=style), PromptFormatter(tok, 10**6, style=style)
        ctx = fmt.encode_context(persona, history)
        p_ids, open_ids = fmt.encode_persona(persona), fmt.encode_context([], [])
        open_ids = open_ids[len(fmt.encode_persona([])):]
        assert ctx[: len(p_ids)] == p_ids  # persona never cut
        assert ctx[len(ctx) - len(open_ids):] == open_ids
        hist = ctx[len(p_ids): len(ctx) - len(open_ids)]
        assert len(hist) <= budget
        assert _is_suffix(hist, full.encode_history(history))  # cut from the left only
        if history:
            assert hist  # never drops the newest turn entirely


def test_whole_turns_dropped_oldest_first(tok):
    fmt = PromptFormatter(tok, max_history_tokens=len(PromptFormatter(tok).encode_history(HISTORY[1:])))
    text = tok.decode(fmt.encode_history(HISTORY))
    assert HISTORY[0] not in text and HISTORY[1] in text and HISTORY[2] in text


def test_newest_turn_longer_than_budget_keeps_its_end(tok):
    fmt = PromptFormatter(tok, max_history_tokens=5)
    ids = fmt.encode_history(["a " * 50 + "final words here"])
    assert len(ids) == 5 and tok.decode(ids).endswith("<|im_end|>\n")


def test_response_round_trip_and_end_marker(tok):
    for style in ("chatml", "plain"):
        fmt = PromptFormatter(tok, style=style)
        ids = fmt.encode_response("  i like pizza too!  ")
        assert ids[-1] == fmt.end_token_id and ids.count(fmt.end_token_id) == 1
        assert fmt.decode_response(ids + [5, 6, 7]) == "i like pizza too!"
    assert PromptFormatter(tok, style="plain").end_token_id == tok.eos_token_id


def test_bad_arguments(tok):
    with pytest.raises(ValueError, match="max_history_tokens"):
        PromptFormatter(tok, max_history_tokens=0)
    with pytest.raises(ValueError, match="style"):
        PromptFormatter(tok, style="nope")
    with pytest.raises(ValueError, match="max_persona_tokens"):
        PromptFormatter(tok, max_persona_tokens=5).encode_context(PERSONA, [])
