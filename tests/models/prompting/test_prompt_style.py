import copy

import pytest

from models.prompting.prompt import PromptFormatter
from models.prompting.prompt_style import CHATML, PLAIN, resolve_style, style_from_chat_template
from tests.models.prompting.chat_tokenizers import TEMPLATES, chat_tokenizer


def _with_template(family: str, template: str | None):
    tok = copy.deepcopy(chat_tokenizer(family))
    tok.chat_template = template
    return tok


def test_base_model_without_template_keeps_the_plain_format():
    assert resolve_style(_with_template("gemma", None)) is PLAIN
    assert resolve_style(_with_template("qwen", None)) is CHATML  # ChatML tokens but no template
    assert resolve_style(chat_tokenizer("gemma"), "plain") is PLAIN
    with pytest.raises(ValueError, match="no chat template"):
        resolve_style(_with_template("gemma", None), "chat_template")


def test_template_that_numbers_its_turns_is_refused_with_a_clear_error():
    numbered = ("{% for m in messages %}<start_of_turn>{{ m['role'] }} {{ loop.index }}\n{{ m['content'] }}"
                "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>assistant\n{% endif %}")
    tok = _with_template("gemma", numbered)
    tok.name_or_path = "my/numbered-model"
    with pytest.raises(ValueError, match="my/numbered-model: its chat template does not render each turn"):
        PromptFormatter(tok)
    assert PromptFormatter(tok, style="plain").style is PLAIN


def test_system_role_that_must_be_followed_by_a_user_turn_puts_the_persona_in_the_user_turn():
    """A system turn is used only if the template accepts the speaker's own turn right after it."""
    strict = TEMPLATES["qwen"].replace(
        "{% for m in messages %}",
        "{% for m in messages %}{% if loop.index0 == 1 and messages[0]['role'] == 'system' and m['role'] != 'user' %}"
        "{{ raise_exception('after the system message comes a user message') }}{% endif %}")
    tok = _with_template("qwen", strict)
    style = style_from_chat_template(tok)
    assert style.system is None and style.head.startswith("<|im_start|>system\nYou are a helpful assistant.")
    fmt = PromptFormatter(tok)
    history = ["hello there!", "hi, how are you?", "good, thanks."]
    msgs = [{"role": "user", "content": fmt.persona_text(["i like tea."])},
            {"role": "assistant", "content": history[1]}, {"role": "user", "content": history[2]}]
    assert fmt.encode_context(["i like tea."], history[1:]) == tok.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"]


def test_reply_closed_by_plain_text_ends_with_eos():
    template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant:{% endif %}")
    tok = _with_template("gemma", template)
    style = style_from_chat_template(tok)
    assert style.end is None and style.response_open == "assistant:"
    assert PromptFormatter(tok).end_token_id == tok.eos_token_id
