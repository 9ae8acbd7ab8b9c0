"""Upload a saved p2bot model to the Hugging Face Hub, and fetch one back with all its files (heads included).

``transformers`` alone would fetch only the LM from a hub id; a p2bot repo (one holding ``marker``, e.g.
``p2bot_transmitter.json``) is downloaded as a snapshot instead, so the heads and metadata come with it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

# every file a p2bot save writes (weights, configs, tokenizer files, the card)
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.md"]


def push_to_hub(save: Callable[[Path], object], repo_id: str, *, private: bool | None = None,
                token: str | None = None, revision: str | None = None, commit_message: str | None = None) -> str:
    """Save with ``save(directory)`` into a temporary folder and upload that folder as one commit.

    Returns the commit URL. Creates the repo if needed.
    """
    import huggingface_hub

    api = huggingface_hub.HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        save(folder)
        info = api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), revision=revision,
                                 commit_message=commit_message or "Upload p2bot model", repo_type="model")
    return str(getattr(info, "commit_url", info))


def local_snapshot(name: str, marker: str, revision: str | None = None) -> str:
    """A local directory for hub id ``name`` if it is a p2bot repo (holds ``marker``); else ``name`` unchanged.

    Local directories are returned as they are. Works offline from the cache (``HF_HUB_OFFLINE=1``). ``name`` is
    left to transformers only when the hub (or the cache's record of it) says ``marker`` is not there.

    Raises:
        OSError: naming the repo and ``marker`` when that cannot be told (offline with no record of ``marker`` in
            the cache, the hub unreachable or failing), or when a p2bot repo's files cannot be fetched. Offline, a
            cached repo with its ``config.json`` but no ``marker`` loads as a plain model, with a logged warning.
    """
    if os.path.isdir(name):
        return name
    import huggingface_hub
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        huggingface_hub.hf_hub_download(name, marker, revision=revision)
    except LocalEntryNotFoundError as err:  # offline or unreachable, and not in the cache
        if huggingface_hub.try_to_load_from_cache(name, marker, revision=revision) is huggingface_hub._CACHED_NO_EXIST:
            return name  # the hub said so on an earlier, online call
        if isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json", revision=revision), str):
            # a cached download of the repo without the marker: whoever downloaded it did not fetch p2bot's files
            logger.warning("hub repo %r: offline and %s is not in the cache, which holds the repo's config.json: "
                           "loading it as a plain model (a p2bot checkpoint's heads would be missing)", name, marker)
            return name
        raise OSError(f"hub repo {name!r}: cannot tell whether it is a p2bot checkpoint ({marker} is not in the local "
                      f"cache and the hub cannot be reached); load it once online, or pass a local "
                      "directory") from err
    except EntryNotFoundError:
        return name  # a plain model: transformers resolves the id itself
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return name  # transformers reports the missing repo or revision itself
    except (HfHubHTTPError, OSError) as err:
        raise OSError(f"hub repo {name!r}: fetching {marker} failed ({err}), so whether it is a p2bot checkpoint "
                      "cannot be told") from err
    try:
        return huggingface_hub.snapshot_download(name, revision=revision, allow_patterns=SNAPSHOT_PATTERNS)
    except (HfHubHTTPError, OSError) as err:
        raise OSError(f"hub repo {name!r} is a p2bot checkpoint ({marker}) but its files could not be fetched: "
                      f"{err}") from err


class PushToHubMixin:
    """``push_to_hub`` for a model class with ``save_pretrained(directory)``."""

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    revision: str | None = None, commit_message: str | None = None) -> str:
        """Upload exactly what ``save_pretrained`` writes (weights, heads, tokenizer, metadata, card) to ``repo_id``
        as one commit; returns its URL. ``from_pretrained(repo_id)`` loads it back whole."""
        return push_to_hub(self.save_pretrained, repo_id, private=private, token=token, revision=revision,
                           commit_message=commit_message)
