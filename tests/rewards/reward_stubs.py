"""Stand-ins for the Transmitter and PromptFormatter interfaces, shared by tests/rewards."""

import torch


class LoggedTransmitter(torch.nn.Module):
    """Transmitter stand-in: the NUP logit is looked up by response length; records what it was given."""

    def __init__(self, logits_by_len):
        super().__init__()
        self.lm = torch.nn.Linear(1, 1)
        self.logits_by_len, self.seen = logits_by_len, []

    def score_nup(self, contexts_ids, responses_ids):
        self.seen.append((contexts_ids, responses_ids))
        return torch.tensor([self.logits_by_len[len(r)] for r in responses_ids])


class CharFormatter:
    tokenizer = staticmethod(lambda text, add_special_tokens=False: {"input_ids": [ord(c) for c in text]})

    def encode_context(self, persona, history):
        return [ord(c) for c in "|".join(persona + history)] + [0]

    def encode_response(self, text):
        return [ord(c) for c in text] + [1]
