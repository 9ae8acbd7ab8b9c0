"""The frozen judges on hand-built inputs: the real untrained MiniLM ranks a persona a speaker states first."""

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from models.loading.embedded import embedded_receiver_path
from models.networks.receiver import Receiver
from models.prompting.prompt import PromptFormatter
from models.scoring.judges import LMJudge, LMPersonaJudge, NLIJudge, PersonaJudge
from models.scoring.scorers import LMScorer
from tests.models.transmitter_fixtures import tiny_transmitter

OWN = ["I have a dog named Max.", "I work as a nurse at the hospital.", "I love baking bread."]
OTHERS = [
    ["I am a pilot.", "I live in Alaska.", "I collect stamps."],
    ["I play the violin.", "My favourite colour is green.", "I have three sisters."],
    ["I am a vegan.", "I run marathons.", "I grew up on a farm."],
    ["I drive a truck.", "I like country music.", "I have never been abroad."],
    ["I teach maths.", "I play chess every weekend.", "I am afraid of spiders."],
]


@pytest.fixture(scope="module")
def minilm():
    return Receiver.from_pretrained("embedded")


def test_a_speaker_who_states_its_persona_ranks_first(minilm):
    judge = PersonaJudge(minilm)
    said = ["Hi! I just got back from a long shift as a nurse at the hospital.", "My dog Max was waiting at the door.",
            "Tonight I am baking some bread."]
    hits, rr = judge.rank(said, OWN, OTHERS)
    assert (hits, rr) == (1.0, 1.0)
    assert PersonaJudge(minilm, aggregate="max").rank(said, OWN, OTHERS) == (1.0, 1.0)
    # stating someone else's persona ranks that one first instead
    pilot = ["I fly planes for a living and I live up in Alaska."]
    assert int(judge.candidate_scores(pilot, [OWN, *OTHERS]).argmax()) == 1
    hits, rr = judge.rank(pilot, OWN, OTHERS)
    assert hits == 0.0 and rr <= 0.5


def test_a_silent_speaker_ties_every_candidate(minilm):
    hits, rr = PersonaJudge(minilm).rank(["", "  "], OWN, OTHERS)  # 6 candidates, all tied
    assert hits == pytest.approx(1 / 6)
    assert rr == pytest.approx(sum(1 / k for k in range(1, 7)) / 6)


def test_tfidf_judge_ranks_by_shared_words_weighted_by_rarity():
    from models.scoring.lexical import TfidfPersonaScorer

    corpus = [s for p in [OWN, *OTHERS] for s in p] + ["I have a cat.", "I have a dog.", "I love my dog."]
    scorer = TfidfPersonaScorer(corpus)
    judge = PersonaJudge(scorer)
    said = ["Back from my shift at the hospital, so tired.", "Max is asleep on my feet."]
    assert judge.rank(said, OWN, OTHERS) == (1.0, 1.0)
    assert int(judge.candidate_scores(["I live in Alaska, the cold is fine."], [OWN, *OTHERS]).argmax()) == 1
    # a rare shared word ("max") outweighs a common one ("dog", in three corpus sentences)
    rare, common = scorer.score(["max and my dog"] * 2, [["i have max."], ["i have a dog."]]).tolist()
    assert 0 < common < rare < 1.0
    assert scorer.score(["dog"], [["i have a dog."]]).item() == pytest.approx(1.0)
    assert scorer.idf["max"] > scorer.idf["dog"]
    # no content word in common (or none at all) scores 0; a silent speaker ties every candidate
    assert scorer.score(["the weather is so nice"], [OWN]).item() == 0.0
    assert scorer.score(["hi, how are you?"], [OWN]).item() == 0.0
    assert torch.equal(judge.candidate_scores(["", " "], [OWN, *OTHERS]), torch.zeros(6))
    with pytest.raises(ValueError, match="2 utterances but 1 personas"):
        scorer.score(["a", "b"], [OWN])


def test_lm_judge_scores_the_response_after_the_context_it_is_told():
    t = tiny_transmitter(seed=3)
    fmt = PromptFormatter(t.tokenizer, max_history_tokens=64)
    scorer = LMScorer(t, t.tokenizer)
    history = ["hi there!", "hello, how are you?"]
    utterance = "great, thanks for asking."
    target = fmt.encode_response(utterance)
    for context, prefix in (("persona_history", fmt.encode_context(OWN, history)),
                            ("history", fmt.head_ids + fmt.encode_history(history) + fmt.response_open_ids),
                            ("none", scorer.start_ids + fmt.response_open_ids)):
        (nll, n), = LMJudge(scorer, fmt, context).nll([OWN], [history], [utterance])
        expected = -scorer.token_logprobs([prefix], [target])[0].sum().item()
        assert n == len(target) and nll == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="context"):
        LMJudge(scorer, fmt, "persona")


@pytest.mark.parametrize("context", ["persona_history", "history", "none"])
def test_lm_judge_scores_a_speakers_turns_in_one_pass_with_the_same_numbers(context):
    t = tiny_transmitter(seed=4)
    scorer = LMScorer(t, t.tokenizer, batch_size=3)
    turns = ["hi! how are you?", "good thanks, and you?", "great, i just baked bread.", "nice! what kind?",
             "sourdough, my favourite."]
    rows = [(OWN if i % 2 == 0 else OTHERS[0], turns[:i], turns[i], ("d", i % 2)) for i in range(5)]
    passes = []
    real = scorer.span_logprobs
    scorer.span_logprobs = lambda seqs, spans: passes.append(len(seqs)) or real(seqs, spans)
    for budget in (1000, 12):  # 12 tokens of history: the contexts stop extending each other, rows are scored alone
        judge = LMJudge(scorer, PromptFormatter(t.tokenizer, max_history_tokens=budget), context)
        args = [[r[k] for r in rows] for k in range(3)]
        chained, alone = judge.nll(*args, chains=[r[3] for r in rows]), judge.nll(*args)
        assert [n for _, n in chained] == [n for _, n in alone]
        assert [v for v, _ in chained] == pytest.approx([v for v, _ in alone], rel=1e-4)
    # with the whole history each speaker's turns are one pass (2 sequences for 5 rows); cut, every row is its own
    expected_chained = 2 if context != "none" else 5  # without context the rows do not extend each other
    assert passes == [expected_chained, 5, 5, 5]


def test_span_logprobs_match_a_direct_forward():
    t = tiny_transmitter(seed=5)
    scorer = LMScorer(t, t.tokenizer)
    seqs = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    spans = [[(1, 3), (4, 6)], [(2, 3)]]
    got = scorer.span_logprobs(seqs, spans)
    for seq, sp, lps in zip(seqs, spans, got):
        with torch.no_grad():
            logp = t.lm(input_ids=torch.tensor([seq])).logits[0].log_softmax(-1)
        for (a, b), lp in zip(sp, lps):
            assert lp.tolist() == pytest.approx([logp[k - 1, seq[k]].item() for k in range(a, b)], abs=1e-4)
    with pytest.raises(ValueError, match="span"):
        scorer.span_logprobs([[1, 2]], [[(0, 1)]])


def _nli(labels: dict[int, str], winner: int) -> NLIJudge:
    tok = AutoTokenizer.from_pretrained(embedded_receiver_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()})
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():  # a classifier that always answers `winner`
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([10.0 if i == winner else 0.0 for i in range(len(labels))]))
    return NLIJudge(model, tok)


def test_nli_judge_reads_the_contradiction_class_from_the_labels():
    labels = {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}
    p = _nli(labels, winner=2).contradiction(["I have a dog."] * 3, ["I have no pets.", "ok", "I love dogs"])
    assert p.shape == (3,) and bool((p > 0.99).all())
    assert bool((_nli(labels, winner=0).contradiction(["a"], ["b"]) < 0.01).all())
    with pytest.raises(ValueError, match="contradiction"):
        _nli({0: "LABEL_0", 1: "LABEL_1"}, winner=0)


@pytest.fixture(scope="module")
def smollm2():
    from models.networks.transmitter import Transmitter

    return Transmitter.from_pretrained("embedded").eval()


def test_lm_persona_judge_ranks_the_stated_persona_first_with_the_untuned_lm(smollm2):
    judge = LMPersonaJudge(smollm2)
    said = ["Hi! I just got back from a long shift as a nurse at the hospital.", "My dog Max was waiting at the door.",
            "Tonight I am baking some bread."]
    assert judge.rank(said, OWN, OTHERS) == (1.0, 1.0)
    pilot = ["I fly planes for a living and I live up in Alaska."]
    assert int(judge.candidate_scores(pilot, [OWN, *OTHERS]).argmax()) == 1
    assert torch.equal(judge.candidate_scores(["", " "], [OWN, *OTHERS]), torch.zeros(6))  # nothing said: a tie


def test_lm_persona_judge_is_the_likelihood_gain_of_separate_forwards_and_scores_each_prior_once():
    t = tiny_transmitter(seed=4)
    judge = LMPersonaJudge(t)
    ids = lambda text: t.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731

    def logprob(context, target):  # one full forward, no KV cache
        with torch.no_grad():
            logp = torch.log_softmax(t.lm(torch.tensor([context + target])).logits[0].float(), -1)
        return float(logp[len(context) - 1:-1].gather(-1, torch.tensor(target)[:, None]).sum())

    said = ["i like tea.", "and chess on sundays."]
    candidates = [OWN, *OTHERS[:3]]
    context = ids(judge.HEAD) + ids("\n".join(said)) + ids(judge.TAIL)
    want = [logprob(context, ids(" " + " ".join(p))) - logprob(ids(judge.PRIOR), ids(" " + " ".join(p)))
            for p in candidates]
    assert judge.candidate_scores(said, candidates).tolist() == pytest.approx(want, abs=1e-4)
    calls = []
    score = t.score_candidates
    t.score_candidates = lambda context, cands: calls.append(len(cands)) or score(context, cands)
    judge.candidate_scores(["something else"], [OTHERS[0], OTHERS[4]])
    assert calls == [1, 2]  # only the new persona's prior, then both candidates after the utterances
