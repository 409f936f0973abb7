"""Sample-quality metrics and the offline feature extractors they can use."""

from ganlab.metrics.extractors import (
    DigitsExtractor,
    ExtractorError,
    TinyExtractor,
    cache_dir,
    register_extractors,
    weights_sha256,
)

register_extractors()  # torch-fidelity finds "ganlab-digits" and "ganlab-tiny" by name

__all__ = [
    "DigitsExtractor",
    "ExtractorError",
    "TinyExtractor",
    "cache_dir",
    "register_extractors",
    "weights_sha256",
]
