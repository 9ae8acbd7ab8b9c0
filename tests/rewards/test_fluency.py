import peft
import pytest
import torch

from models.scoring.scorers import LMScorer
from rewards import FluencyReward


def manual_mean_logprob(model, prefix, target):
    ids = torch.tensor([prefix + target])
    with torch.no_grad():
        logps = model(input_ids=ids).logits[0].log_softmax(-1)  # (L, V)
    return sum(logps[len(prefix) - 1 + k, tok].item() for k, tok in enumerate(target)) / len(target)


def test_utterance_alone_matches_a_manual_log_prob(make_tiny_llama, smollm2_tokenizer):
    tok, model = smollm2_tokenizer, make_tiny_llama(0)
    texts = ["i love my two dogs.", "Hello there, how are you doing today?", ""]
    reward = FluencyReward(LMScorer(model, tok, batch_size=2), empty_score=-7.0)
    got = reward(["p"] * 3, [texts[0], [{"role": "assistant", "content": texts[1]}], texts[2]])
    start = [tok.bos_token_id]
    for text, value in zip(texts[:2], got):
        assert value == pytest.approx(manual_mean_logprob(model, start, tok(text, add_special_tokens=False)["input_ids"]), abs=1e-4)
    assert got[2] == -7.0


class TinyFormatter:
    """Stands in for models.prompting.prompt.PromptFormatter: fixed marker tokens around persona and history."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def encode_context(self, persona, history):
        return self.tokenizer(" ".join(persona) + " | " + " / ".join(history) + " >", add_special_tokens=False)["input_ids"]

    def encode_response(self, text):
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]


def test_condition_on_context(make_tiny_llama, smollm2_tokenizer):
    tok, model = smollm2_tokenizer, make_tiny_llama(0)
    fmt = TinyFormatter(tok)
    reward = FluencyReward(LMScorer(model, tok), formatter=fmt, condition_on_context=True)
    persona, history, text = ["i am a nurse."], ["hi, what do you do?"], "i work nights at the hospital."
    got = reward(["ignored"], [text], persona=[persona], history=[history])[0]
    assert got == pytest.approx(manual_mean_logprob(model, fmt.encode_context(persona, history), fmt.encode_response(text)), abs=1e-4)


def test_condition_on_context_refuses_a_missing_persona_or_history(make_tiny_llama, smollm2_tokenizer):
    tok, model = smollm2_tokenizer, make_tiny_llama(0)
    reward = FluencyReward(LMScorer(model, tok), formatter=TinyFormatter(tok), condition_on_context=True)
    persona, history, text = ["i am a nurse."], ["hi, what do you do?"], "i work nights at the hospital."
    with pytest.raises(ValueError, match="needs the kwarg\\(s\\) 'history' \\("):
        reward(["what do you do?"], [text], persona=[persona])
    with pytest.raises(ValueError, match="needs the kwarg\\(s\\) 'persona' \\("):
        reward(["what do you do?"], [text], history=[history])
    with pytest.raises(ValueError, match="'persona', 'history'"):
        reward(["what do you do?"], [text])  # a bare prompt is not the speaker's context
    with pytest.raises(ValueError, match="condition_on_context=True needs a formatter or a pool"):
        FluencyReward(LMScorer(model, tok), condition_on_context=True)
    assert FluencyReward(LMScorer(model, tok))(["p"], [text])  # the utterance alone needs neither


def test_a_sequence_the_model_was_made_to_prefer_scores_higher(make_tiny_llama, smollm2_tokenizer):
    tok, model = smollm2_tokenizer, make_tiny_llama(3)
    liked, other = "my dog likes long walks on the beach.", "quarterly revenue exceeded analyst estimates."
    ids = [tok.bos_token_id] + tok(liked, add_special_tokens=False)["input_ids"]
    with torch.no_grad():  # raise the logit of each next token of `liked` at its position: W[x_{k+1}] += c·h_k/|h_k|²
        hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]  # (L, D)
        for k in range(len(ids) - 1):
            model.lm_head.weight[ids[k + 1]] += 8.0 * hidden[k] / hidden[k].pow(2).sum()
    model.train()
    reward = FluencyReward(LMScorer(model, tok))
    liked_score, other_score = reward(["p", "p"], [liked, other])
    assert liked_score > other_score + 1.0
    assert model.training  # the scorer restores the mode it found


def test_lora_policy_is_scored_with_its_adapter_disabled(make_tiny_llama, smollm2_tokenizer):
    tok = smollm2_tokenizer
    base_scores = FluencyReward(LMScorer(make_tiny_llama(0), tok))(["p"], ["i love dogs."])
    lora = peft.get_peft_model(make_tiny_llama(0), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                    init_lora_weights=False))
    with torch.no_grad():  # make the adapter matter
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    as_reference = FluencyReward(LMScorer(lora, tok))(["p"], ["i love dogs."])
    with_adapter = FluencyReward(LMScorer(lora, tok, disable_adapter=False))(["p"], ["i love dogs."])
    assert as_reference == pytest.approx(base_scores, abs=1e-5)
    assert abs(with_adapter[0] - base_scores[0]) > 1e-3
