"""The one prompt format shared by SFT, self-play, evaluation and the rewards.

A context is: the speaker's own persona, then the dialogue history (the last entry is the partner's), then the
marker that opens the speaker's response. The layout comes from ``models.prompting.prompt_style``: the tokenizer's chat
template when it has one (persona as the system message, partner = user, self = assistant; without a system turn the
persona opens the first user turn), ChatML for tokenizers with its tokens but no template, plain text markers for
base models.

The history is cut from the left (oldest turns first) to ``max_history_tokens``; the persona is never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.prompting.prompt_style import CHATML, PLAIN, STYLE_NAMES, PromptStyle, Wrap, resolve_style

__all__ = ["CHATML", "PLAIN", "STYLE_NAMES", "PromptFormatter", "PromptStyle", "default_style", "end_of_turn_id"]


def default_style(tokenizer) -> PromptStyle:
    """The layout ``PromptFormatter`` picks for ``tokenizer``: its chat template, else ChatML, else plain."""
    return resolve_style(tokenizer)


def end_of_turn_id(tokenizer, style: PromptStyle | None = None) -> int | None:
    """Id of the token that ends a reply in ``style`` (default: the tokenizer's own layout); EOS for plain."""
    style = style or resolve_style(tokenizer)
    return tokenizer.eos_token_id if style.end is None else tokenizer.convert_tokens_to_ids(style.end)


@dataclass
class _Turn:
    wrap: Wrap
    text: str
    ids: list[int]
    cut: bool = False


class PromptFormatter:
    """Encode (persona, history) contexts and responses to token ids.

    Args:
        tokenizer: the policy's tokenizer.
        max_history_tokens: token budget of the history (seed: 256); oldest turns are dropped first, and
            a newest turn longer than the budget keeps only its last tokens.
        max_persona_tokens: optional sanity bound on the persona block; a longer persona raises
            ``ValueError`` (it is never cut). ``None``: no bound.
        style: ``"chat_template"``, ``"chatml"``, ``"plain"`` or ``None`` (the tokenizer's chat template if it has
            one, else ChatML if it has the ChatML tokens, else plain).
    """

    def __init__(self, tokenizer, max_history_tokens: int = 256, max_persona_tokens: int | None = None,
                 style: str | None = None):
        if max_history_tokens < 1:
            raise ValueError(f"max_history_tokens must be >= 1, got {max_history_tokens}")
        self.tokenizer = tokenizer
        self.max_history_tokens = max_history_tokens
        self.max_persona_tokens = max_persona_tokens
        self.style = resolve_style(tokenizer, style)
        self.end_token_id = end_of_turn_id(tokenizer, self.style)
        if self.end_token_id is None:
            raise ValueError("the tokenizer has no EOS token; pass style='chatml' or set tokenizer.eos_token")
        self._open_ids = self._ids(self.style.response_open)
        self._head_ids = self._ids(self.style.head)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def persona_text(self, persona: Sequence[str]) -> str:
        return self.style.persona_intro + self.style.persona_joiner.join(s.strip() for s in persona)

    def encode_persona(self, persona: Sequence[str]) -> list[int]:
        """The persona block: the system turn, or (a layout without one) the head and a user turn of the persona."""
        st = self.style
        text = self.persona_text(persona)
        ids = self._ids(st.system(text)) if st.system is not None else self._head_ids + self._ids(st.user(text))
        if self.max_persona_tokens is not None and len(ids) > self.max_persona_tokens:
            raise ValueError(f"persona block is {len(ids)} tokens > max_persona_tokens={self.max_persona_tokens}")
        return ids

    def _kept_turns(self, history: Sequence[str]) -> list[_Turn]:
        """The newest turns that fit ``max_history_tokens``, oldest first; the last entry is the partner's."""
        kept: list[_Turn] = []
        used = 0
        n = len(history)
        for i in range(n - 1, -1, -1):  # newest first
            wrap = self.style.user if (n - 1 - i) % 2 == 0 else self.style.assistant
            text = history[i].strip()
            ids = self._ids(wrap(text))
            if used + len(ids) > self.max_history_tokens:
                if not kept:  # the newest turn alone is too long: keep its end
                    kept.append(_Turn(wrap, text, ids[-self.max_history_tokens:], cut=True))
                break
            kept.append(_Turn(wrap, text, ids))
            used += len(ids)
        return kept[::-1]

    def encode_history(self, history: Sequence[str]) -> list[int]:
        """The newest turns that fit ``max_history_tokens``; the last entry is the partner's."""
        return [t for turn in self._kept_turns(history) for t in turn.ids]

    def encode_history_context(self, history: Sequence[str]) -> list[int]:
        """The context without the persona: the layout's head, the history (left-truncated), the response opener."""
        return self._head_ids + self.encode_history(history) + list(self._open_ids)

    def encode_context(self, persona: Sequence[str], history: Sequence[str]) -> list[int]:
        """Persona, then history (left-truncated), then the response-opening marker.

        In a layout without a system turn the persona opens the first kept user turn; when the kept history starts
        with the speaker's own turn (or is empty) the persona is a user turn of its own.
        """
        turns = self._kept_turns(history)
        st = self.style
        if st.system is None and turns and turns[0].wrap is st.user and not turns[0].cut:
            if self.max_persona_tokens is not None:
                self.encode_persona(persona)  # the bound applies to the persona on its own
            first = self._ids(st.user(self.persona_text(persona) + st.persona_sep + turns[0].text))
            prefix, turns = self._head_ids + first, turns[1:]
        else:
            prefix = self.encode_persona(persona)
        return prefix + [t for turn in turns for t in turn.ids] + list(self._open_ids)

    @property
    def head_ids(self) -> list[int]:
        """What every prompt of the layout starts with before its first turn (e.g. a BOS token; often nothing)."""
        return list(self._head_ids)

    @property
    def response_open_ids(self) -> list[int]:
        """The marker that opens a response (what ``encode_context`` ends with)."""
        return list(self._open_ids)

    def encode_response(self, text: str) -> list[int]:
        """Response tokens followed by the end marker (which generation stops on)."""
        body = text.strip()
        if self.style is PLAIN:
            body = " " + body
        return self._ids(body) + [self.end_token_id]

    def decode_response(self, ids: Sequence[int]) -> str:
        """Text of generated response ids, cut at the first end marker."""
        ids = list(ids)
        if self.end_token_id in ids:
            ids = ids[: ids.index(self.end_token_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
