"""Model weights in every format: run directories, Hugging Face folders, GGUF files, the built-in SmolLM2;
loading any of them as a Transformer with its tokenizer, and export."""
