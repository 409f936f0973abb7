from ganlab.callbacks.monitor import TrainingMonitor
from ganlab.callbacks.sample_grid import SampleGrid
from ganlab.callbacks.sample_quality import SampleQualityCallback

__all__ = ["SampleGrid", "SampleQualityCallback", "TrainingMonitor"]
