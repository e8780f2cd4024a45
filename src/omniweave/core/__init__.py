"""Pure core: models and maths. No network, no files, no globals; imports nothing from adapters."""
