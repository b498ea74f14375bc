"""Exception types shared by the trainer, exporter and runtime.

Every message says what went wrong, where (a path, a shape, an option) and what to do about it.
"""


class HsstError(Exception):
    """Base class of all hsst errors."""


class ImageReadError(HsstError):
    """An image file could not be read or decoded."""


class DatasetError(HsstError):
    """A dataset root is missing, empty or not in an expected layout."""


class ModelError(HsstError):
    """A model file is missing, unreadable or incompatible with this code."""


class ConfigError(HsstError):
    """A configuration value or a combination of options is invalid."""


class InputError(HsstError):
    """An array passed to the API has the wrong shape, dtype or size."""
