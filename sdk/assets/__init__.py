"""Data files shipped with hsst: face-mesh topology and the default embedding model (models/, MODEL_CARD.md)."""
