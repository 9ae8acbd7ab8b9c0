"""The networks: the Transmitter (causal LM + next-utterance head + optional value head), the Receiver
(bi-encoder), and a separate critic."""

from models.networks.receiver import Receiver
from models.networks.transmitter import Transmitter

__all__ = ["Receiver", "Transmitter"]
