"""Self-play evaluation by judges the run never optimised: ``play`` (dialogues on held-out pairs) and ``judge``
(tallies per pair), ``stats`` (summaries, paired bootstrap), ``transcripts`` (the dialogue record: written and read
here), ``selection`` (which checkpoint to ship) and ``averaging`` (weight averages of policies)."""
