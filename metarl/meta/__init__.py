"""The inner loop and its variants, shared by the RL and supervised paths."""

from metarl.meta.adapt import adapt, adapt_per_task, adapt_vmap
from metarl.meta.anil import head_names
from metarl.meta.maml_plus_plus import StepParams
from metarl.meta.metasgd import MetaSGDRates
from metarl.meta.reptile import reptile_grads
from metarl.meta.task_rates import TaskRates

__all__ = ["adapt", "adapt_per_task", "adapt_vmap", "head_names", "MetaSGDRates",
           "reptile_grads", "StepParams", "TaskRates"]
