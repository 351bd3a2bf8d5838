"""clbench: a continual-learning benchmark harness for supermasks in superposition and their
baselines."""

__version__ = "0.1.0"
