"""Training of each network: multi-task SFT of the Transmitter (``sft``), weakly supervised Receiver training
(``receiver_training``)."""
