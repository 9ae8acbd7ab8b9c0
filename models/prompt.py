"""The one prompt format shared by SFT, self-play, evaluation and the rewards.

A context is: the speaker's own persona, then the dialogue history with speaker markers (the last entry is
the partner's), then the marker that opens the speaker's response. With a ChatML tokenizer (SmolLM2, Qwen,
...) the markers are ChatML turns (persona as the system message, partner = user, self = assistant), so an
instruct model starts from a format it knows; otherwise plain text markers are used.

The history is cut from the left (oldest turns first) to ``max_history_tokens``; the persona is never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptStyle:
    """Text pieces around each part of the prompt (``{text}`` is replaced by the content)."""

    name: str
    persona: str  # {text}: persona sentences joined by persona_joiner
    persona_joiner: str
    partner: str
    self_: str
    response_open: str
    end: str | None  # text of the end marker token; None: the tokenizer's EOS


CHATML = PromptStyle(
    name="chatml",
    persona="<|im_start|>system\nYou are chatting with a new friend. Your persona:\n{text}<|im_end|>\n",
    persona_joiner="\n",
    partner="<|im_start|>user\n{text}<|im_end|>\n",
    self_="<|im_start|>assistant\n{text}<|im_end|>\n",
    response_open="<|im_start|>assistant\n",
    end="<|im_end|>",
)
PLAIN = PromptStyle(
    name="plain",
    persona="your persona: {text}\n",
    persona_joiner=" ",
    partner="partner: {text}\n",
    self_="you: {text}\n",
    response_open="you:",
    end=None,
)
STYLES = {s.name: s for s in (CHATML, PLAIN)}


def default_style(tokenizer) -> PromptStyle:
    """ChatML when the tokenizer has both ChatML special tokens, else plain markers."""
    vocab = tokenizer.get_vocab()
    return CHATML if "<|im_start|>" in vocab and "<|im_end|>" in vocab else PLAIN


class PromptFormatter:
    """Encode (persona, history) contexts and responses to token ids.

    Args:
        tokenizer: the policy's tokenizer.
        max_history_tokens: token budget of the history (seed: 256); oldest turns are dropped first, and
            a newest turn longer than the budget keeps only its last tokens.
        max_persona_tokens: optional sanity bound on the persona block; a longer persona raises
            ``ValueError`` (it is never cut). ``None``: no bound.
        style: ``"chatml"``, ``"plain"`` or ``None`` (pick from the tokenizer).
    """

    def __init__(self, tokenizer, max_history_tokens: int = 256, max_persona_tokens: int | None = None,
                 style: str | None = None):
        if max_history_tokens < 1:
            raise ValueError(f"max_history_tokens must be >= 1, got {max_history_tokens}")
        self.tokenizer = tokenizer
        self.max_history_tokens = max_history_tokens
        self.max_persona_tokens = max_persona_tokens
        if style is not None and style not in STYLES:
            raise ValueError(f"style must be one of {sorted(STYLES)} or None, got {style!r}")
        self.style = STYLES[style] if style else default_style(tokenizer)
        end = self.style.end
        self.end_token_id = tokenizer.eos_token_id if end is None else tokenizer.convert_tokens_to_ids(end)
        if self.end_token_id is None:
            raise ValueError("the tokenizer has no EOS token; pass style='chatml' or set tokenizer.eos_token")
        self._open_ids = self._ids(self.style.response_open)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _wrap(self, template: str, text: str) -> list[int]:
        return self._ids(template.format(text=text.strip()))

    def encode_persona(self, persona: Sequence[str]) -> list[int]:
        ids = self._wrap(self.style.persona, self.style.persona_joiner.join(s.strip() for s in persona))
        if self.max_persona_tokens is not None and len(ids) > self.max_persona_tokens:
            raise ValueError(f"persona block is {len(ids)} tokens > max_persona_tokens={self.max_persona_tokens}")
        return ids

    def encode_history(self, history: Sequence[str]) -> list[int]:
        """The newest turns that fit ``max_history_tokens``; the last entry is the partner's."""
        kept: list[list[int]] = []
        used = 0
        n = len(history)
        for i in range(n - 1, -1, -1):  # newest first
            is_partner = (n - 1 - i) % 2 == 0
            ids = self._wrap(self.style.partner if is_partner else self.style.self_, history[i])
            if used + len(ids) > self.max_history_tokens:
                if not kept:  # the newest turn alone is too long: keep its end
                    kept.append(ids[-self.max_history_tokens:])
                break
            kept.append(ids)
            used += len(ids)
        return [t for ids in reversed(kept) for t in ids]

    def encode_context(self, persona: Sequence[str], history: Sequence[str]) -> list[int]:
        """Persona, then history (left-truncated), then the response-opening marker."""
        return self.encode_persona(persona) + self.encode_history(history) + list(self._open_ids)

    @property
    def response_open_ids(self) -> list[int]:
        """The marker that opens a response (what ``encode_context`` ends with)."""
        return list(self._open_ids)

    def encode_response(self, text: str) -> list[int]:
        """Response tokens followed by the end marker (which generation stops on)."""
        body = text.strip()
        if self.style.name == "plain":
            body = " " + body
        return self._ids(body) + [self.end_token_id]

    def decode_response(self, ids: Sequence[int]) -> str:
        """Text of generated response ids, cut at the first end marker."""
        ids = list(ids)
        if self.end_token_id in ids:
            ids = ids[: ids.index(self.end_token_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
