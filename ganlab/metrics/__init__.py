"""Sample-quality metrics and the offline feature extractors they can use."""

from ganlab.metrics.extractors import (
    DigitsExtractor,
    ExtractorError,
    TinyExtractor,
    cache_dir,
    register_extractors,
    weights_sha256,
)
from ganlab.metrics.translation import TranslationScores, load_lpips, lpips_backbone_file

register_extractors()  # torch-fidelity finds "ganlab-digits" and "ganlab-tiny" by name

__all__ = [
    "DigitsExtractor",
    "ExtractorError",
    "TinyExtractor",
    "TranslationScores",
    "cache_dir",
    "load_lpips",
    "lpips_backbone_file",
    "register_extractors",
    "weights_sha256",
]
