"""Vision-language models: training on image-text data and held-out visual question answering."""
