import re

import yaml
from huggingface_hub import ModelCard

from models.infra.model_card import EMBEDDED_IDS, CardInfo, hub_id, render_card
from models.networks.transmitter import Transmitter
from tests.models.transmitter_fixtures import tiny_transmitter


def _yaml_block(text: str) -> dict:
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))


def test_hub_ids_only_for_hub_names(tmp_path):
    assert hub_id("embedded") == EMBEDDED_IDS["policy"] and hub_id("embedded", "receiver") == EMBEDDED_IDS["receiver"]
    assert hub_id("bavard/personachat_truecased") == "bavard/personachat_truecased"
    assert hub_id(str(tmp_path)) is None and hub_id("runs/sft/model/extra") is None and hub_id("") is None
    (tmp_path / "user").mkdir()
    assert hub_id(str(tmp_path / "user")) is None


def test_transmitter_card_reports_base_data_config_and_metrics(tmp_path):
    model = tiny_transmitter(with_value_head=True)
    model.card.update(base_model="embedded", datasets=["bavard/personachat_truecased", "data/train.csv"], stage="sft",
                      config={"learning_rate": 1e-5, "report_to": ["tensorboard"], "output_dir": "runs/sft"},
                      metrics={"eval/f1": 0.2231, "train/loss": 2.5})
    out = model.save_pretrained(tmp_path / "model")
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.datasets == ["bavard/personachat_truecased"]  # a local file is named in the text only
    assert "p2bot" in card.data.tags and "sft" in card.data.tags
    assert "`data/train.csv`" in card.text and "| eval/f1 | 0.2231 |" in card.text
    assert _yaml_block(card.text) == {"learning_rate": 1e-5, "report_to": ["tensorboard"], "output_dir": "runs/sft"}
    assert "- `p2bot_heads.safetensors`" in card.text and "value head" in card.text
    # the base model survives a reload, so the next stage's card still names it
    assert Transmitter.from_pretrained(out).card.base_model == "embedded"


def test_receiver_card(tmp_path, tiny_receiver_dir):
    from models.networks.receiver import Receiver

    receiver = Receiver.from_pretrained(tiny_receiver_dir)
    receiver.card.update(base_model="embedded", datasets=["sample"], stage="receiver", metrics={"hits@1": 0.5})
    card = ModelCard.load(receiver.save_pretrained(tmp_path / "r") / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and card.data.pipeline_tag == "sentence-similarity"
    assert "| hits@1 | 0.5 |" in card.text and "p2bot_receiver.json" in card.text
    assert Receiver.from_pretrained(tmp_path / "r").card.base_model == "embedded"


def test_card_without_training_info_says_so():
    text = render_card(CardInfo(base_model="/local/model"), kind="policy", summary="s", files=["a"])
    assert "base_model" not in text.split("---")[1] and "not recorded" in text and "## Metrics" not in text
