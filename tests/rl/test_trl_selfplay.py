"""Self-play inside ``trl.GRPOTrainer`` (``rl.trl_selfplay``) and ``p2bot rl-trl``, on a tiny random policy (CPU)."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from models.prompting.prompt import end_of_turn_id
from rl.partner import LaggedPartner
from rl.selfplay import Sampling, SelfPlayEnv
from rl.trl_selfplay import DialogueReward, SelfPlayRollout, selfplay_dataset, trl_reward_funcs
from tests.rl.rl_fixtures import PromptFormatter, Transmitter

pytestmark = pytest.mark.filterwarnings("ignore:You are using 'rollout_func'")

PAIRS = [
    {"pair_id": "p0", "persona_a": ["i love dogs.", "i live in paris."], "persona_b": ["i am a nurse."],
     "first_utterance": "hi!"},
    {"pair_id": "p1", "persona_a": ["i play chess."], "persona_b": ["i like tea.", "i have two cats."],
     "first_utterance": "hey"},
    {"pair_id": "p2", "persona_a": ["i run."], "persona_b": ["i cook."], "first_utterance": "yo"},
]
LETTER_E = "tests.rl.toy_rewards:letter_e"


def char_sum(prompts, completions, **kwargs):
    """A p2bot reward that differs between almost any two different turns (so GRPO groups have an advantage)."""
    return [float(sum(map(ord, c)) % 97) for c in completions]


@pytest.fixture(scope="module")
def formatter(smollm2_tokenizer):
    return PromptFormatter(smollm2_tokenizer, max_history_tokens=512)


@pytest.fixture(scope="module")
def digit_model_dir(tmp_path_factory, smollm2_tokenizer):
    """A tiny random Phi that says only digits and its end marker. Its replies re-tokenise to the same ids, so every
    turn chains onto the speaker's view; a random model's sub-word soup mostly does not (and stops the dialogue)."""
    from transformers import PhiConfig, PhiForCausalLM

    tok = smollm2_tokenizer
    live = [tok.convert_tokens_to_ids(str(d)) for d in range(10)] + [end_of_turn_id(tok)]
    torch.manual_seed(0)
    cfg = PhiConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0)
    model = PhiForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # varied, context-dependent choices among the live tokens
        model.lm_head.bias.fill_(-30.0)
        model.lm_head.bias[live] = 0.0
    path = tmp_path_factory.mktemp("digits")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_trainer(tmp_path, model_dir, rollout, funcs=None, **overrides):
    from trl import GRPOConfig, GRPOTrainer

    funcs = funcs or [DialogueReward(char_sum, "chars")]
    args = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, num_generations=2, max_steps=2,
                learning_rate=1e-2, report_to="none", save_strategy="no", logging_steps=1, use_cpu=True,
                disable_tqdm=True, seed=0, bf16=False)  # GRPOConfig's default bf16=True autocasts even on CPU
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return GRPOTrainer(model=model, reward_funcs=funcs, args=GRPOConfig(**{**args, **overrides}),
                       train_dataset=selfplay_dataset(PAIRS), processing_class=rollout.tokenizer, rollout_func=rollout)


class RecordingRollout(SelfPlayRollout):
    def __call__(self, prompts, trainer):
        self.seen = [*getattr(self, "seen", []), list(prompts)]
        return super().__call__(prompts, trainer)


@pytest.mark.parametrize("partner", ["self", "frozen", "lagged"])
def test_grpo_trains_two_steps_on_selfplay(tmp_path, digit_model_dir, formatter, partner):
    other = {"self": None, "frozen": Transmitter.from_pretrained(str(digit_model_dir)).eval(),
             "lagged": LaggedPartner(AutoModelForCausalLM.from_pretrained(digit_model_dir), sync_steps=1)}[partner]
    rollout = RecordingRollout(PAIRS, formatter, exchanges=2, response_length=6, partner=other)
    funcs, weights = trl_reward_funcs([LETTER_E])
    trainer = make_trainer(tmp_path, digit_model_dir, rollout, [*funcs, DialogueReward(char_sum, "chars")],
                           reward_weights=[*weights, 1.0])
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2 and rollout.chain_breaks == 0
    # TRL's sampler has already repeated each prompt num_generations (2) times: one dialogue per prompt
    assert [len(s) for s in rollout.seen] == [2, 2] and all(s[0] == s[1] for s in rollout.seen)
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    logged = {k for row in trainer.state.log_history for k in row}
    assert {"rewards/letter_e/mean", "rewards/chars/mean"} <= logged
    if partner == "lagged":  # synced from the policy when the second batch was generated: one update behind
        assert other.synced_at == 1
        final = dict(trainer.model.named_parameters())
        assert any(not torch.equal(p, before[n]) for n, p in other.model.named_parameters())
        assert any(not torch.equal(p, final[n]) for n, p in other.model.named_parameters())


@pytest.mark.parametrize("model, budget", [("digits", 512), ("digits", 24), ("random", 512)])
def test_completion_is_the_speakers_view_and_partner_tokens_are_env(tmp_path, tiny_model_dir, digit_model_dir,
                                                                    smollm2_tokenizer, model, budget):
    formatter = PromptFormatter(smollm2_tokenizer, max_history_tokens=budget)
    rollout = SelfPlayRollout(PAIRS, formatter, exchanges=3, response_length=6)
    trainer = make_trainer(tmp_path, digit_model_dir if model == "digits" else tiny_model_dir, rollout)
    torch.manual_seed(0)
    out = rollout(["p0", "p0", "p1", "p1"], trainer)
    assert len(out["completion_ids"]) == 4 and out["dialogue_id"] == ["p0#0", "p0#1", "p1#2", "p1#3"]
    for i, prompt in enumerate(["p0", "p0", "p1", "p1"]):
        pair = rollout.pairs[prompt]
        ids, comp, mask = out["prompt_ids"][i], out["completion_ids"][i], out["env_mask"][i]
        turns, speakers, spans = out["transcript"][i], out["speakers"][i], out["turn_spans"][i]
        assert ids == formatter.encode_context(pair["persona_a"], [])
        assert len(mask) == len(comp) == len(out["logprobs"][i]) and mask[0] == 1
        assert speakers == ["A", "B"] * (len(turns) // 2) + ["A"] * (len(turns) % 2)
        own = [0] * len(comp)
        for t, (speaker, span) in enumerate(zip(speakers, spans)):
            if speaker == "A" and span is not None:
                start, end = span
                # what A saw when it sampled turn t is exactly the sequence before its reply
                assert ids + comp[:start] == formatter.encode_context(pair["persona_a"], turns[:t])
                assert formatter.decode_response(comp[start:end]) == turns[t]
                own[start:end] = [1] * (end - start)
            elif span is not None:  # B's turn: the env tokens after A's previous reply
                assert speaker == "B" and spans[t - 1][1] == span[0] and spans[t + 1][0] == span[1]
        assert mask == own  # 1 on A's replies only
        assert all(lp == 0.0 for lp, m in zip(out["logprobs"][i], mask) if not m)
        assert all(lp < 0.0 for lp, m in zip(out["logprobs"][i], mask) if m)
        assert out["persona"][i] == pair["persona_a"] and out["partner_persona"][i] == pair["persona_b"]
        if len(turns) < 6:  # stopped: A's next context does not extend what it has seen
            assert formatter.encode_context(pair["persona_a"], turns)[: len(ids + comp)] != ids + comp
    assert rollout.chain_breaks == sum(len(t) < 6 for t in out["transcript"])
    if model == "digits":  # every reply re-tokenises: only a cut history (a small budget) stops a dialogue
        assert (rollout.chain_breaks == 0) == (budget == 512)


def test_partner_tokens_get_no_gradient(tmp_path, digit_model_dir, formatter):
    """On TRL's own loss: d loss / d log p(token) is zero at every partner (env) token, non-zero at A's tokens."""
    rollout = SelfPlayRollout(PAIRS, formatter, exchanges=2, response_length=6)
    trainer = make_trainer(tmp_path, digit_model_dir, rollout)
    trainer.model.train()
    torch.manual_seed(1)
    batch = trainer._generate_and_score_completions([{"prompt": "p0"}, {"prompt": "p0"}])
    env = (batch["tool_mask"] == 0) & (batch["completion_mask"] == 1)
    own = (batch["tool_mask"] == 1) & (batch["completion_mask"] == 1)
    assert env.any() and own.any() and (batch["advantages"] != 0).all()
    captured = []
    forward = trainer._get_per_token_logps_and_entropies

    def keep_grad(*args, **kwargs):
        logps, entropies, aux = forward(*args, **kwargs)
        logps.retain_grad()
        captured.append(logps)
        return logps, entropies, aux

    trainer._get_per_token_logps_and_entropies = keep_grad
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop, which this test skips
    trainer.compute_loss(trainer.model, batch).backward()
    (logps,) = captured
    assert logps.grad[env].abs().max() == 0
    assert logps.grad[own].abs().min() > 0
    # the rollout's log-probs are the trainer's own (one model, no sampling mismatch) on A's tokens
    torch.testing.assert_close(batch["sampling_per_token_logps"][own], logps.detach()[own], atol=1e-4, rtol=0)


class VLLMStandIn:
    """What ``SelfPlayRollout`` uses of TRL's ``VLLMGeneration`` (vLLM needs a GPU): ``generate(prompts=token ids,
    images, num_generations)`` sampling at most ``max_completion_length`` tokens, returning vLLM's nested per-token
    log-probs, and ``sync_weights``. It samples with a copy of the policy and records every call."""

    mode, tensor_parallel_size = "colocate", 1

    def __init__(self, model_dir):
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.max_completion_length, self.calls, self.syncs = 512, [], 0

    def sync_weights(self):
        self.syncs += 1

    @torch.no_grad()
    def generate(self, prompts, images, num_generations, profiler=None):
        assert images is None and num_generations == 1
        self.calls.append((len(prompts), self.max_completion_length))
        completions, logprobs = [], []
        for ids in prompts:
            out = self.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                      do_sample=True, max_new_tokens=self.max_completion_length, output_scores=True,
                                      return_dict_in_generate=True, pad_token_id=0)
            new = out.sequences[0, len(ids):].tolist()
            lps = [torch.log_softmax(score[0], -1)[tok].item() for score, tok in zip(out.scores, new)]
            completions.append(new)
            logprobs.append([[lp] for lp in lps])
        return prompts, completions, logprobs, None


def test_vllm_engine_generates_speaker_turns_and_its_logprobs_reach_trl(tmp_path, digit_model_dir, formatter):
    """With ``use_vllm``, A's turns come from TRL's engine (one call per A turn, capped at ``response_length``) and the
    rollout's log-probs are the engine's; B's turns come from p2bot's generation; TRL's own scoring accepts them."""
    rollout = SelfPlayRollout(PAIRS, formatter, exchanges=2, response_length=6)
    trainer = make_trainer(tmp_path, digit_model_dir, rollout)
    engine = VLLMStandIn(digit_model_dir)
    trainer.use_vllm, trainer.vllm_generation, trainer._last_loaded_step = True, engine, -1  # as TRL's __init__
    torch.manual_seed(0)
    out = rollout(["p0", "p0", "p1", "p1"], trainer)
    assert [cap for _, cap in engine.calls] == [6, 6] and engine.max_completion_length == 512
    assert engine.calls[0][0] == 4  # every dialogue's first A turn in one call
    for lps, mask, spans, speakers in zip(out["logprobs"], out["env_mask"], out["turn_spans"], out["speakers"]):
        assert all(lp == 0.0 for lp, m in zip(lps, mask) if not m)
        assert all(lp < 0.0 for lp, m in zip(lps, mask) if m)
        assert [s for s, span in zip(speakers, spans) if span is not None][0] == "A"
    # the log-probs are the engine's own: the policy scores A's tokens the same (same weights, temperature 1)
    ids = torch.tensor([out["prompt_ids"][0] + out["completion_ids"][0]])
    logits = engine.model(ids).logits[0, len(out["prompt_ids"][0]) - 1:-1]
    policy = torch.log_softmax(logits, -1).gather(1, torch.tensor(out["completion_ids"][0])[:, None])[:, 0]
    own = torch.tensor(out["env_mask"][0]).bool()
    torch.testing.assert_close(torch.tensor(out["logprobs"][0])[own], policy[own], atol=1e-4, rtol=0)
    trainer.model.train()
    batch = trainer._generate_and_score_completions([{"prompt": "p1"}, {"prompt": "p1"}])
    assert engine.syncs == 1 and batch["completion_ids"].shape[0] == 2
    # TRL's importance-sampling correction compares them with the policy's: the same weights give a ratio of 1
    ratio = batch["importance_sampling_ratio"]
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="speaker_sampling is not used with TRL's vLLM engine"):
        SelfPlayRollout(PAIRS, formatter, speaker_sampling=Sampling(False))(["p0"], trainer)


@pytest.mark.parametrize("first_utterance", [False, True])
@pytest.mark.parametrize("greedy", [True, False])
def test_dialogues_equal_selfplay_env(tmp_path, digit_model_dir, formatter, greedy, first_utterance):
    """Same pair, same seed, same settings: the transcript is ``SelfPlayEnv``'s, up to where a chain break stops it."""
    s = Sampling(do_sample=not greedy, temperature=1.0)
    rollout = SelfPlayRollout(PAIRS, formatter, exchanges=2, response_length=6, speaker_sampling=s,
                              partner_sampling=s, use_first_utterance=first_utterance)
    trainer = make_trainer(tmp_path, digit_model_dir, rollout)
    env = SelfPlayEnv(PAIRS[:1], formatter, pairs_per_step=1, rollouts_per_pair=2, response_length=6, sampling_a=s,
                      sampling_b=s, use_first_utterance=first_utterance, reuse_kv_cache=False)
    policy = Transmitter.from_pretrained(str(digit_model_dir)).eval()
    torch.manual_seed(3)
    out = rollout(["p0", "p0"], trainer)
    torch.manual_seed(3)
    dialogues = env.rollout(policy, step=0, num_exchanges=2).dialogues
    # a stopped dialogue leaves the batch, so sampled rows draw other random numbers from then on (greedy ones do not)
    shared = min(len(t) for t in out["transcript"])
    for turns, speakers, d in zip(out["transcript"], out["speakers"], dialogues):
        assert len(d.turns) == 4 + first_utterance
        n = len(turns) if greedy else shared
        assert turns[:n] == d.turns[:n] and speakers == d.speakers[: len(turns)]
    assert rollout.chain_breaks == 0 and out["transcript"] == [d.turns for d in dialogues]
    assert len({tuple(t) for t in out["transcript"]}) == (1 if greedy else 2)  # sampled: two different dialogues


def test_dialogue_reward_scores_turns_as_selfplay_and_averages_over_a():
    calls = []

    def record(prompts, completions, **kwargs):
        calls.append((prompts, completions, kwargs))
        return [float(len(c)) if s == "A" else 100.0 for c, s in zip(completions, kwargs["speaker"])]

    kwargs = dict(transcript=[["hi!", "bb", "aaaa", "b"], ["x", "yy"]], speakers=[["A", "B", "A", "B"], ["A", "B"]],
                  generated=[[False, True, True, True], [True, True]], turn_prompts=[["", "c1", "c2", "c3"], ["d0", "d1"]],
                  turn_spans=[[None, None, [0, 5], None], [[0, 2], None]], persona=[["pa"], ["qa"]],
                  partner_persona=[["pb"], ["qb"]], dialogue_id=["p0#0", "p1#1"], trainer_state=None)
    scores = DialogueReward(record, "rec")(prompts=["p0", "p1"], completions=["..", ".."], **kwargs)
    assert scores == [4.0, 1.0]  # A's trained turns only: "aaaa" (the opening "hi!" is given), "x"
    ((prompts, completions, kw),) = calls
    assert completions == ["bb", "aaaa", "b", "x", "yy"] and prompts == ["c1", "c2", "c3", "d0", "d1"]
    assert kw["persona"] == [["pb"], ["pa"], ["pb"], ["qa"], ["qb"]]
    assert kw["partner_persona"] == [["pa"], ["pb"], ["pa"], ["qb"], ["qa"]]
    assert kw["history"] == [["hi!"], ["hi!", "bb"], ["hi!", "bb", "aaaa"], [], ["x"]]
    assert kw["turn"] == [1, 2, 3, 0, 1] and kw["speaker"] == ["B", "A", "B", "A", "B"]
    assert kw["dialogue_id"] == ["p0#0"] * 3 + ["p1#1"] * 2 and set(kw) == {
        "persona", "partner_persona", "history", "turn", "speaker", "dialogue_id"}
    none = DialogueReward(lambda prompts, completions, **kw: [None] * len(completions), "none")
    assert none(prompts=["p0", "p1"], completions=["", ""], **kwargs) == [None, None]
    with pytest.raises(ValueError, match="SelfPlayRollout"):
        DialogueReward(record)(prompts=["p"], completions=["c"])


def test_trl_reward_funcs_names_and_weights():
    funcs, weights = trl_reward_funcs([{"name": LETTER_E, "weight": 0.5}, "degeneration", "degeneration"])
    assert [f.__name__ for f in funcs] == ["letter_e", "degeneration", "degeneration_2"] and weights[0] == 0.5
    _, overridden = trl_reward_funcs([LETTER_E, "degeneration"], [2.0, 3.0])
    assert overridden == [2.0, 3.0]
    with pytest.raises(ValueError, match="reward_funcs is empty"):
        trl_reward_funcs([])


def test_rollout_rejects_bad_input(tmp_path, tiny_model_dir, formatter):
    with pytest.raises(ValueError, match="distinct pair_id"):
        SelfPlayRollout([PAIRS[0], PAIRS[0]], formatter)
    rollout = SelfPlayRollout(PAIRS, formatter, response_length=2)
    trainer = make_trainer(tmp_path, tiny_model_dir, rollout)
    with pytest.raises(ValueError, match="'nope' is not the pair_id"):
        rollout(["nope"], trainer)
    trainer.use_vllm = True  # but no engine: an error, not a silent fallback to the policy's own generation
    with pytest.raises(ValueError, match="no vllm_generation engine"):
        rollout(["p0"], trainer)


def test_rl_trl_command_one_step(tmp_path, tiny_model_dir, tiny_receiver_dir):
    from launch.cli import main

    out = tmp_path / "run"
    rc = main(["rl-trl", "--model", str(tiny_model_dir), "--max_dialogues", "3", "--output_dir", str(out),
               "--reward_funcs", "persona", LETTER_E, "--receiver_name_or_path", str(tiny_receiver_dir),
               "--exchanges", "1", "--response_length", "4", "--max_steps", "1", "--per_device_train_batch_size", "2",
               "--num_generations", "2", "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true",
               "--disable_tqdm", "true", "--partner", "frozen"])
    assert rc == 0
    assert (out / "model.safetensors").is_file() and (out / "resolved_config.yaml").is_file()


def test_rl_trl_command_trains_lora_adapters(tmp_path, tiny_model_dir, tiny_receiver_dir):
    """``--use_peft true``: TRL gets the LoRA config, trains adapters only and saves them (B matrices leave zero)."""
    from safetensors.torch import load_file

    from launch.cli import main

    out = tmp_path / "run"
    rc = main(["rl-trl", "--model", str(tiny_model_dir), "--max_dialogues", "3", "--output_dir", str(out),
               "--reward_funcs", LETTER_E, "--receiver_name_or_path", str(tiny_receiver_dir), "--exchanges", "1",
               "--response_length", "4", "--max_steps", "1", "--per_device_train_batch_size", "2",
               "--num_generations", "2", "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true",
               "--disable_tqdm", "true", "--learning_rate", "0.01", "--use_peft", "true", "--lora_r", "4",
               "--lora_target_modules", "q_proj", "v_proj"])
    assert rc == 0 and not (out / "model.safetensors").exists()
    adapters = load_file(out / "adapter_model.safetensors")
    b = [t for n, t in adapters.items() if "lora_B" in n]
    assert len(b) == 2 * 2 and any(t.abs().max() > 0 for t in b)  # q and v in each of the tiny model's 2 layers
    assert all("q_proj" in n or "v_proj" in n for n in adapters)


def test_rl_trl_command_rejects_bad_options(capsys):
    from launch.cli import main

    assert main(["rl-trl", "--partner", "mirror"]) == 2
    assert "partner='mirror'" in capsys.readouterr().err
    assert main(["rl-trl", "--partner", "lagged", "--use_peft", "true"]) == 2
    assert "partner='lagged' copies the policy's trainable weights" in capsys.readouterr().err
    assert main(["rl-trl", "--use_vllm", "true", "--use_cpu", "true"]) == 1
    assert "--use_vllm true needs vLLM" in capsys.readouterr().err
