"""A toy reward for learning tests (``p2bot bench options --task toy``): any policy can raise it within minutes."""


def letter_rate(prompts, completions, letter: str = "e", **kwargs) -> list[float]:
    """Share of the completion's characters that are ``letter`` (TRL's reward protocol)."""
    return [c.count(letter) / (1 + len(c)) for c in completions]
