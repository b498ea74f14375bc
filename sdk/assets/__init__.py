"""Data files shipped with hsst: face-mesh topology and (with issue 4) the default model."""
