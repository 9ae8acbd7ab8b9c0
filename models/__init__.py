"""Networks (``networks``), prompts (``prompting``), generation, loading, training of each network (``training``),
scorers, judges and metrics (``scoring``), and trainer-side infrastructure (``infra``: trackers, train state, model
cards, the hub)."""

from data_prep.moved import install as _install_moved

_install_moved()
