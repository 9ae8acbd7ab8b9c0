import random

import pytest

from models.prompting.prompt import PromptFormatter
from tests.models.prompting.chat_tokenizers import END_OF_TURN, chat_tokenizer
from tests.models.transmitter_fixtures import HISTORY, PERSONA, smollm2_tokenizer


@pytest.fixture(scope="module")
def tok():
    return smollm2_tokenizer()


def _is_suffix(part, whole):
    return len(part) <= len(whole) and whole[len(whole) - len(part):] == part


def test_chatml_layout_and_speaker_markers(tok):
    fmt = PromptFormatter(tok)
    assert fmt.style.name == "chat_template"  # SmolLM2's own template, which is ChatML
    for history in ([], HISTORY[:1], HISTORY[1:], HISTORY):
        assert fmt.encode_context(PERSONA, history) == PromptFormatter(tok, style="chatml").encode_context(PERSONA, history)
    text = tok.decode(fmt.encode_context(PERSONA, HISTORY))
    assert text.startswith("<|im_start|>system\n") and all(p in text for p in PERSONA)
    # the last history entry is the partner's (user); turns alternate backwards from there
    assert "<|im_start|>user\nnice, where did you go?<|im_end|>" in text
    assert "<|im_start|>assistant\ngreat, just back from a long hike.<|im_end|>" in text
    assert "<|im_start|>user\nhi! how are you today?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert tok.decode(fmt.encode_context(PERSONA, HISTORY[1:])).count("<|im_start|>user") == 1


def test_history_context_is_the_context_without_the_persona(tok):
    fmt = PromptFormatter(tok)
    text = tok.decode(fmt.encode_history_context(HISTORY))
    assert not any(p in text for p in PERSONA) and "<|im_start|>system" not in text
    assert _is_suffix(fmt.encode_history(HISTORY) + fmt.response_open_ids, fmt.encode_history_context(HISTORY))
    assert _is_suffix(fmt.encode_history_context(HISTORY), fmt.encode_context(PERSONA, HISTORY))  # system turn first
    assert tok.decode(fmt.encode_history_context([])) == "<|im_start|>assistant\n"


@pytest.mark.parametrize("style", ["chatml", "plain"])
def test_truncation_properties(tok, style):
    _check_truncation(tok, style)


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


# --- chat templates of other families (tokenizers built in chat_tokenizers.py) ---

FAMILIES = ["llama3", "gemma", "gemma3", "qwen", "mistral"]


def _messages(fmt, persona, history, system_role: bool):
    """What the chat template is given for this context: persona as the system message, or opening the first user
    turn (a user turn of its own when the history starts with the speaker's own turn)."""
    n = len(history)
    turns = [{"role": "user" if (n - 1 - i) % 2 == 0 else "assistant", "content": t} for i, t in enumerate(history)]
    persona_text = fmt.persona_text(persona)
    if system_role:
        return [{"role": "system", "content": persona_text}] + turns
    if turns and turns[0]["role"] == "user":
        return [{"role": "user", "content": persona_text + "\n\n" + turns[0]["content"]}] + turns[1:]
    return [{"role": "user", "content": persona_text}] + turns


@pytest.mark.parametrize("family", FAMILIES)
def test_context_is_what_the_chat_template_renders(family):
    tok = chat_tokenizer(family)
    fmt = PromptFormatter(tok, max_history_tokens=10**6)
    assert fmt.style.name == "chat_template"
    assert (fmt.style.system is not None) == (family in ("llama3", "qwen"))
    for n in range(len(HISTORY) + 1):
        history = HISTORY[len(HISTORY) - n:]
        msgs = _messages(fmt, PERSONA, history, system_role=fmt.style.system is not None)
        want = tok.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"]
        assert fmt.encode_context(PERSONA, history) == want, (family, n)
        if family == "gemma3":  # this template folds a system message into the first user turn the same way
            sys_msgs = _messages(fmt, PERSONA, history, system_role=True)
            if n % 2 == 1:
                assert tok.apply_chat_template(sys_msgs, add_generation_prompt=True)["input_ids"] == want


@pytest.mark.parametrize("family", FAMILIES)
def test_context_plus_response_is_the_rendered_reply(family):
    """What SFT trains on (context + response + end of turn) is the template's rendering of the reply."""
    tok = chat_tokenizer(family)
    fmt = PromptFormatter(tok)
    reply = "i just got back from a long walk with my dog."
    msgs = _messages(fmt, PERSONA, HISTORY, system_role=fmt.style.system is not None)
    rendered = tok.apply_chat_template(msgs + [{"role": "assistant", "content": reply}])["input_ids"]
    ids = fmt.encode_context(PERSONA, HISTORY) + fmt.encode_response(reply)
    assert rendered[: len(ids)] == ids
    assert tok.convert_ids_to_tokens(fmt.end_token_id) == END_OF_TURN[family]
    assert fmt.decode_response(fmt.encode_response(reply) + [5, 6]) == reply


@pytest.mark.parametrize("family", ["gemma", "mistral"])
def test_persona_in_the_first_user_turn_survives_truncation(family):
    """Without a system turn the persona opens the first kept user turn, or is a user turn of its own when the kept
    history starts with the speaker's own turn; it is never cut."""
    tok = chat_tokenizer(family)
    full = PromptFormatter(tok, max_history_tokens=10**6)
    for keep in (1, 2):
        fmt = PromptFormatter(tok, max_history_tokens=len(full.encode_history(HISTORY[-keep:])))
        msgs = _messages(fmt, PERSONA, HISTORY[-keep:], system_role=False)
        assert [m["role"] for m in msgs] == (["user"] if keep == 1 else ["user", "assistant", "user"])
        ctx = fmt.encode_context(PERSONA, HISTORY)
        assert ctx == tok.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"]
        assert HISTORY[0] not in tok.decode(ctx) and all(p in tok.decode(ctx) for p in PERSONA)


def _check_truncation(tok, style):
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


@pytest.mark.parametrize("family", ["llama3", "qwen"])
def test_truncation_properties_with_a_system_turn(family):
    _check_truncation(chat_tokenizer(family), None)
