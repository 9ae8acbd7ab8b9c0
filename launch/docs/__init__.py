"""The documentation tools: result records rendered into pages, the configuration reference, the docs checker."""
