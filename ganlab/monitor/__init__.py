"""The training monitor: per-player diagnostics (ganlab.monitor.diagnostics), alarms with advice
(ganlab.monitor.alarms) and views of a generator (ganlab.monitor.views); the callback that runs
them during training is ganlab.callbacks.TrainingMonitor."""
