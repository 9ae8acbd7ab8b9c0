"""File infrastructure every layer uses: atomic writes and directory swaps with fsync, append-only JSONL logs."""
