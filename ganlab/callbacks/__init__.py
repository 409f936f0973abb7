from ganlab.callbacks.sample_grid import SampleGrid

__all__ = ["SampleGrid"]
