"""metarl: gradient-based meta-learning (MAML) for RL and supervised tasks."""

__version__ = "0.1.0"
