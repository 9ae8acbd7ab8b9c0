"""The text layout of a prompt: what surrounds the persona, each partner turn, each own turn and the reply.

Three layouts exist. ``chat_template`` is read off the tokenizer's own chat template (Llama-3, Gemma, Qwen, Mistral,
SmolLM2, ...): the template is rendered on short conversations of sentinel words, the text around each sentinel
gives the pieces, and the pieces are checked to rebuild every rendering exactly, so a turn looks the same wherever
it stands in the prompt (which the history budget and cross-turn KV reuse rely on). ``chatml`` is the ChatML layout
for tokenizers that have its tokens but no template; ``plain`` uses text markers, for base models.

Where the template has no system turn (it raises on one, or folds it into a user turn), the persona opens the first
user turn instead, followed by a blank line; a history that starts with the speaker's own turn then gets a user turn
holding the persona alone, so user and assistant turns still alternate from a user turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import TemplateError

PERSONA_INTRO = "You are chatting with a new friend. Your persona:\n"


@dataclass(frozen=True)
class Wrap:
    """Text before and after the content of one piece of the prompt."""

    before: str
    after: str

    def __call__(self, text: str) -> str:
        return self.before + text + self.after


@dataclass(frozen=True)
class PromptStyle:
    """The pieces of a prompt layout.

    ``system`` wraps the persona block, or is None when the persona opens the first user turn (after ``head``,
    separated from that turn's text by ``persona_sep``). ``end`` is the token that closes a reply (None: EOS).
    """

    name: str
    system: Wrap | None
    user: Wrap  # a partner turn
    assistant: Wrap  # one of the speaker's own turns
    response_open: str
    end: str | None
    head: str = ""
    persona_intro: str = PERSONA_INTRO
    persona_joiner: str = "\n"
    persona_sep: str = "\n\n"


CHATML = PromptStyle(
    name="chatml",
    system=Wrap("<|im_start|>system\n", "<|im_end|>\n"),
    user=Wrap("<|im_start|>user\n", "<|im_end|>\n"),
    assistant=Wrap("<|im_start|>assistant\n", "<|im_end|>\n"),
    response_open="<|im_start|>assistant\n",
    end="<|im_end|>",
)
PLAIN = PromptStyle(
    name="plain",
    system=Wrap("your persona: ", "\n"),
    user=Wrap("partner: ", "\n"),
    assistant=Wrap("you: ", "\n"),
    response_open="you:",
    end=None,
    persona_intro="",
    persona_joiner=" ",
)
STYLE_NAMES = ("chat_template", "chatml", "plain")

_S, _U1, _A1, _U2 = "p2botsysxq", "p2botuserxa", "p2botassistxb", "p2botuserxc"


def resolve_style(tokenizer, name: str | None = None) -> PromptStyle:
    """The named layout; ``None`` picks the chat template if the tokenizer has one, else ChatML if it has the
    ChatML tokens, else plain."""
    if name is not None and name not in STYLE_NAMES:
        raise ValueError(f"style must be one of {list(STYLE_NAMES)} or None, got {name!r}")
    if name == "chat_template" or (name is None and getattr(tokenizer, "chat_template", None)):
        return style_from_chat_template(tokenizer)
    vocab = tokenizer.get_vocab()
    if name == "chatml" or (name is None and "<|im_start|>" in vocab and "<|im_end|>" in vocab):
        return CHATML
    return PLAIN


def style_from_chat_template(tokenizer) -> PromptStyle:
    """Read the layout off ``tokenizer.chat_template`` (see the module docstring)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{_name(tokenizer)}: the tokenizer has no chat template; use style 'chatml' or 'plain'")
    style = _with_system(tokenizer) or _without_system(tokenizer)
    if style is None:
        raise ValueError(
            f"{_name(tokenizer)}: its chat template does not render each turn the same way wherever it stands, so "
            "p2bot cannot build its prompts turn by turn; use style 'plain' or 'chatml'")
    return style


def _name(tokenizer) -> str:
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def _render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str | None:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except (TemplateError, ValueError, TypeError, KeyError, IndexError):
        return None


def _growing(tokenizer, turns: list[tuple[str, str]]) -> list[str] | None:
    """Renders of the first 1, 2, ... n turns, then of all n with the generation prompt; None if any render fails
    or a render is not a prefix of the next."""
    msgs = [{"role": r, "content": c} for r, c in turns]
    out = [_render(tokenizer, msgs[:k]) for k in range(1, len(msgs) + 1)] + [_render(tokenizer, msgs, True)]
    if any(r is None for r in out) or any(not b.startswith(a) for a, b in zip(out, out[1:])):
        return None
    return out


def _split(segment: str, sentinel: str) -> Wrap | None:
    if segment.count(sentinel) != 1:
        return None
    before, after = segment.split(sentinel)
    return Wrap(before, after)


def _with_system(tokenizer) -> PromptStyle | None:
    r = _growing(tokenizer, [("system", _S), ("user", _U1), ("assistant", _A1), ("user", _U2)])
    if r is None:
        return None
    system, user = _split(r[0], _S), _split(r[1][len(r[0]):], _U1)
    assistant, user2 = _split(r[2][len(r[1]):], _A1), _split(r[3][len(r[2]):], _U2)
    if None in (system, user, assistant) or user2 != user:
        return None
    # a speaker's own turn may come first in its history (it opened the dialogue): the template must take that too
    if _render(tokenizer, [{"role": "system", "content": _S}, {"role": "assistant", "content": _A1},
                           {"role": "user", "content": _U1}]) != system(_S) + assistant(_A1) + user(_U1):
        return None
    return _style(tokenizer, system=system, user=user, assistant=assistant, open_=r[4][len(r[3]):], head="")


def _without_system(tokenizer) -> PromptStyle | None:
    r = _growing(tokenizer, [("user", _U1), ("assistant", _A1), ("user", _U2)])
    if r is None:
        return None
    user, assistant = _split(r[2][len(r[1]):], _U2), _split(r[1][len(r[0]):], _A1)
    if None in (user, assistant) or not r[0].endswith(user(_U1)):
        return None
    head = r[0][: len(r[0]) - len(user(_U1))]
    return _style(tokenizer, system=None, user=user, assistant=assistant, open_=r[3][len(r[2]):], head=head)


def _style(tokenizer, *, system, user, assistant, open_, head) -> PromptStyle:
    return PromptStyle(name="chat_template", system=system, user=user, assistant=assistant, response_open=open_,
                       end=_end_of_turn(tokenizer, assistant.after), head=head)


def _end_of_turn(tokenizer, after_reply: str) -> str | None:
    """The special token that closes an assistant turn in the template (None: none there, so EOS)."""
    text = after_reply.lstrip()
    specials = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    specials |= set(tokenizer.all_special_tokens)
    found = [t for t in specials if t and text.startswith(t)]
    return max(found, key=len) if found else None
