"""``p2bot sft``: multi-task SFT of the Transmitter (LM on response tokens + next-utterance prediction).

Options: ``TransmitterSFTConfig`` (model, data, alpha, LoRA, ...) plus every HF ``TrainingArguments`` field
(``--output_dir``, ``--learning_rate``, ``--max_steps``, ``--gradient_checkpointing``, ``--resume_from_checkpoint``,
``--report_to``, ...), from ``--config file.yaml`` and/or the command line. Runs under ``accelerate launch``.
Writes checkpoints and logs to ``output_dir`` and the final Transmitter to ``output_dir/model``.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import TrainingArguments

from data_prep import build_transmitter_examples
from launch.config_io import config_to_dict, parse_configs, save_resolved_config
from launch.errors import option, read_data
from models.networks.transmitter import Transmitter
from models.prompting.prompt import PromptFormatter
from models.training.sft import SFTCollator, TransmitterSFTConfig, TransmitterSFTDataset, TransmitterSFTTrainer

DEFAULT_OUTPUT_DIR = "runs/sft"


def load_dialogues(path: str, data_format: str | None, skip: int = 0, limit: int = 0):
    """Dialogues of ``path`` ('' or 'sample': the shipped sample set), ``[skip : skip + limit]``; prints the
    records read, repaired and skipped."""
    dialogues = read_data(path, data_format).dialogues[skip:]
    return dialogues[:limit] if limit else dialogues


CONFIG_TYPES = (TransmitterSFTConfig, TrainingArguments)  # what main parses; the docs build its parser from this


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg, args = parse_configs(CONFIG_TYPES, argv, prog="p2bot sft",
                              description=__doc__)
    if args.output_dir in (None, "trainer_output"):
        args.output_dir = DEFAULT_OUTPUT_DIR
    args.remove_unused_columns = False  # the collator needs every field of the examples
    args.label_names = ["labels"]
    out = Path(args.output_dir)
    save_resolved_config(out, cfg, args)
    with option("--data"):
        train_dialogues = load_dialogues(cfg.data, cfg.data_format, cfg.skip_dialogues, cfg.max_dialogues)
    with option("--eval_data"):
        eval_dialogues = load_dialogues(cfg.eval_data, cfg.data_format) if cfg.eval_data else None
    with option("--model", cfg.model):
        model = Transmitter.from_pretrained(cfg.model, with_value_head=cfg.with_value_head, lora=cfg.lora_config())
    formatter = PromptFormatter(model.tokenizer, max_history_tokens=cfg.max_history_tokens)

    def dataset(dialogues):
        rows = build_transmitter_examples(dialogues, num_distractors=max(cfg.num_distractors, 0), seed=cfg.distractor_seed)
        return TransmitterSFTDataset(rows, formatter, cfg.max_response_tokens)

    train_ds = dataset(train_dialogues)
    eval_ds = dataset(eval_dialogues) if eval_dialogues else None
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"p2bot sft: {len(train_dialogues)} dialogues -> {len(train_ds)} examples; model {cfg.model} "
          f"({'LoRA' if cfg.use_peft else 'full'}, {n_trainable:,} trainable parameters); alpha={cfg.alpha}")
    trainer = TransmitterSFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                    data_collator=SFTCollator(model.tokenizer.pad_token_id),
                                    processing_class=model.tokenizer, alpha=cfg.alpha,
                                    label_smoothing=cfg.label_smoothing, heads_learning_rate=cfg.heads_learning_rate)
    model.card.update(stage="sft", config=config_to_dict(cfg, args),
                      datasets=[cfg.data or "sample", *([cfg.eval_data] if cfg.eval_data else [])])
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    if trainer.is_world_process_zero():
        model.card.metrics = {k: v for row in trainer.state.log_history for k, v in row.items()  # the last of each
                              if isinstance(v, int | float) and k not in ("step", "epoch")}
        final = model.save_pretrained(out / "model")
        print(f"p2bot sft: saved the Transmitter to {final}")
    return 0
