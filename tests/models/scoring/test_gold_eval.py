import math

import pytest
import torch

from data_prep import PersonaDialogue
from models.generation.sampling import generate
from models.prompting.prompt import PromptFormatter
from models.scoring.gold_eval import build_eval_examples, evaluate_transmitter, f1_of, generate_responses
from tests.models.transmitter_fixtures import tiny_transmitter

TOPICS = ["dogs", "jazz", "tea", "chess", "skiing", "cooking", "running", "paris"]
DIALOGUES = [
    PersonaDialogue([f"i like {t}.", "i have a sister."], [f"i hate {t}."],
                    [f"do you like {t}?", f"no, {t} bores me.", f"really? {t} is great.", f"we disagree on {t}."],
                    dialogue_id=f"d{i}")
    for i, t in enumerate(TOPICS)
]


def test_build_eval_examples_candidates_and_sampling():
    rows = build_eval_examples(DIALOGUES, num_candidates=20, seed=0)
    assert len(rows) == 32 and all(len(r["distractors"]) == 19 for r in rows)
    for r in rows:  # distractors come from other dialogues
        topic = TOPICS[int(r["dialogue_id"][1:])]
        assert r["response"] not in r["distractors"] and all(topic not in d for d in r["distractors"])
    assert build_eval_examples(DIALOGUES, seed=0) == rows  # fixed seed → same candidates
    some = build_eval_examples(DIALOGUES, seed=0, examples_per_dialogue=2)
    assert len(some) == 16 and {r["dialogue_id"] for r in some} == {d.dialogue_id for d in DIALOGUES}
    own = [PersonaDialogue(["p."], ["q."], ["a", "b"], candidates=[[f"c{k}" for k in range(25)] + ["a"], None])]
    own += DIALOGUES
    first = build_eval_examples(own, num_candidates=20)[0]
    assert all(d.startswith("c") for d in first["distractors"])  # the data's own candidate list is used
    with pytest.raises(ValueError, match="num_candidates"):
        build_eval_examples(DIALOGUES, num_candidates=1)


def test_evaluate_transmitter_matches_independent_computation():
    t = tiny_transmitter(seed=2)
    fmt = PromptFormatter(t.tokenizer, max_history_tokens=64)
    rows = build_eval_examples(DIALOGUES, num_candidates=5, seed=1, examples_per_dialogue=1)[:4]
    res = evaluate_transmitter(t, rows, fmt, max_new_tokens=6, batch_size=3)
    assert res.num_examples == 4 and res.num_candidates == 5
    # F1 from an unbatched generation of the same contexts
    single = [fmt.decode_response(generate(t, [fmt.encode_context(r["persona"], r["history"])], max_new_tokens=6)[0])
              for r in rows]
    assert res.f1 == pytest.approx(f1_of(single, rows))
    assert generate_responses(t, fmt, rows, batch_size=2, max_new_tokens=6) == single
    # perplexity and Hits@1 from full forwards, one sequence at a time
    nll, n_tok, hits_nup, hits_lm = 0.0, 0, 0, 0
    for r in rows:
        ctx = fmt.encode_context(r["persona"], r["history"])
        scores_nup, scores_lm = [], []
        for k, text in enumerate([r["response"]] + r["distractors"]):
            resp = fmt.encode_response(text)
            with torch.no_grad():
                logp = torch.log_softmax(t.lm(torch.tensor([ctx + resp])).logits[0].float(), -1)
            lp = logp[len(ctx) - 1: len(ctx) - 1 + len(resp)].gather(-1, torch.tensor(resp)[:, None]).squeeze(-1)
            scores_lm.append(float(lp.mean()))
            scores_nup.append(float(t.score_nup([ctx], [resp])[0]))
            if k == 0:
                nll -= float(lp.sum())
                n_tok += len(resp)
        hits_nup += scores_nup[0] > max(scores_nup[1:])
        hits_lm += scores_lm[0] > max(scores_lm[1:])
    assert res.ppl == pytest.approx(math.exp(nll / n_tok), rel=1e-4) and res.ppl_tokens == n_tok
    assert res.hits1_nup == hits_nup / 4 and res.hits1_lm == hits_lm / 4
    assert "Hits@1 (NUP head)" in res.table() and res.to_dict()["num_examples"] == 4
    per = res.per_example  # the per-turn values the aggregates are made of (paired comparisons resample them)
    assert per["dialogue_id"] == [r["dialogue_id"] for r in rows] and sum(per["tokens"]) == n_tok
    assert math.exp(sum(per["nll"]) / n_tok) == pytest.approx(res.ppl) and sum(per["hits1_nup"]) == hits_nup
    assert per["f1"] == pytest.approx([f1_of([s], [r]) for s, r in zip(single, rows)])


def test_evaluate_subset_of_metrics_and_bad_metric():
    t = tiny_transmitter()
    fmt = PromptFormatter(t.tokenizer, max_history_tokens=32)
    rows = build_eval_examples(DIALOGUES, num_candidates=3, examples_per_dialogue=1)[:2]
    res = evaluate_transmitter(t, rows, fmt, metrics=("ppl",))
    assert res.f1 is None and res.hits1_nup is None and res.ppl > 1
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_transmitter(t, rows, fmt, metrics=("bleu",))
