"""Trainer-side infrastructure: trackers (``tracking``), resumable train state (``train_state``), model cards
(``model_card``) and the Hugging Face Hub (``hub``)."""
