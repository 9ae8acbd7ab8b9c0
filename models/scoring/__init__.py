"""Scorers, judges and metrics: frozen-model scorers (``scorers``), the self-play judges (``judges``), ranking and
bootstrap statistics (``metrics``), lexical copy/echo/coverage measures (``text_metrics``, ``lexical``), and the
evaluation of a Transmitter on gold responses (``gold_eval``)."""
