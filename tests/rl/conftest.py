import pytest

from tests.rl.rl_fixtures import build_tiny_model_dir, load_smollm2_tokenizer


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    return load_smollm2_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer):
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_policy"), smollm2_tokenizer)
