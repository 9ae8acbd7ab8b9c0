"""Weight averaging of policies (``rl.evaluation.averaging``) and ``p2bot average``, on tiny random Llamas."""

import pytest
import torch
from peft import LoraConfig

from launch.cli import main as cli
from models.networks.transmitter import Transmitter
from rl.evaluation.averaging import average_transmitters
from tests.models.transmitter_fixtures import smollm2_tokenizer, tiny_lm, tiny_transmitter


def saved(tmp_path, name, seed, with_value_head=False):
    path = tmp_path / name
    t = tiny_transmitter(seed, with_value_head=with_value_head)
    torch.manual_seed(seed)
    with torch.no_grad():
        for head in (t.nup_head, t.value_head):
            for p in head.parameters() if head is not None else ():
                p.normal_()  # trained heads (fresh ones start alike)
    t.save_pretrained(path)
    return path


def states(*paths):
    return [Transmitter.from_pretrained(p).state_dict() for p in paths]


def test_average_is_the_weighted_mean_of_every_parameter_and_head(tmp_path):
    a, b = saved(tmp_path, "a", 1, True), saved(tmp_path, "b", 2, True)
    sa, sb = states(a, b)
    uniform = average_transmitters([a, b]).state_dict()
    weighted = average_transmitters([a, b], [3, 1]).state_dict()
    assert set(uniform) == set(sa) and any(k.startswith("nup_head") for k in sa) and any(k.startswith("value_head")
                                                                                        for k in sa)
    for k in sa:
        assert not torch.equal(sa[k], sb[k]) or "norm" in k, k  # the two seeds differ (norm weights start at 1)
        torch.testing.assert_close(uniform[k], (sa[k] + sb[k]) / 2)
        torch.testing.assert_close(weighted[k], 0.75 * sa[k] + 0.25 * sb[k])
    # a model averaged with itself is itself
    same = average_transmitters([a, a]).state_dict()
    assert all(torch.equal(same[k], sa[k]) for k in sa)


def test_lora_policies_are_merged_before_averaging(tmp_path):
    tok = smollm2_tokenizer()
    tiny_lm(tok, 0).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    merged = []
    for seed in (1, 2):
        t = Transmitter.from_pretrained(str(tmp_path / "base"), lora=lora)
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, p in t.lm.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)  # a trained adapter: B != 0
        t.save_pretrained(tmp_path / f"lora{seed}")
        merged.append(Transmitter.from_pretrained(tmp_path / f"lora{seed}").lm.merge_and_unload().state_dict())
    avg = average_transmitters([tmp_path / "lora1", tmp_path / "lora2"])
    assert not avg.is_peft
    out = avg.lm.state_dict()
    key = next(k for k in out if k.endswith("q_proj.weight"))
    assert not torch.equal(merged[0][key], merged[1][key])
    for k in out:
        torch.testing.assert_close(out[k], (merged[0][k] + merged[1][k]) / 2)


def test_average_refuses_other_architectures_and_bad_weights(tmp_path):
    a = saved(tmp_path, "a", 1)
    wide = tmp_path / "wide"
    Transmitter(tiny_lm(smollm2_tokenizer(), 1, hidden=64), smollm2_tokenizer()).save_pretrained(wide)
    with pytest.raises(ValueError, match="wide: parameter .* is \\(.*64"):
        average_transmitters([a, wide])
    with pytest.raises(ValueError, match="at least two"):
        average_transmitters([a])
    with pytest.raises(ValueError, match="positive sum"):
        average_transmitters([a, a], [0, 0])


def test_average_cli_writes_a_loadable_policy_and_names_bad_input(tmp_path, capsys):
    a, b = saved(tmp_path, "a", 1), saved(tmp_path, "b", 2)
    out = tmp_path / "avg"
    assert cli(["average", "--models", f"{a},{b}", "--output_dir", str(out)]) == 0
    got = Transmitter.from_pretrained(out / "model").state_dict()
    want = average_transmitters([a, b]).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert (out / "model" / "model.safetensors").is_file() and (out / "resolved_config.yaml").is_file()
    assert "2 policies (weights [1.0, 1.0]) averaged" in capsys.readouterr().out
    assert cli(["average", "--models", str(a), "--output_dir", str(out)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert cli(["average", "--models", f"{a},{tmp_path / 'missing'}", "--output_dir", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("p2bot average: error: --models") and "missing" in err
