"""How a persona, a history and a response become tokens: chat-template styles and the ``PromptFormatter``."""
