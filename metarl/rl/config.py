"""Configuration of MAML-TRPO runs. Defaults are the MAML paper's 2D navigation settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from metarl.schema import ConfigError, keep_checkpoint_spec, spec, time_limit_spec


@dataclass
class RLConfig:
    """MAML-RL (Finn et al. 2017, section 5.3): policy-gradient inner steps, TRPO outer step."""

    kind: Literal["rl"] = "rl"
    env: str = spec("Navigation2D", doc="family name, id metarl/<Name>-v0, or module:Class")
    env_kwargs: dict = field(default_factory=dict)
    method: Literal["maml", "metasgd", "anil", "pretrained", "random", "oracle"] = spec(
        "maml", doc="maml; metasgd (learned per-parameter inner rates, meta-learned by TRPO); "
        "anil (inner step on the policy's last layer only); or the paper's baselines: "
        "pretrained (TRPO on the task distribution), random (initialisation only), oracle "
        "(task parameters in the observation)")
    seed: int = spec(0, low=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = spec(1, low=1, doc="torch intra-op threads (small nets: 1 is fastest)")
    iterations: int = spec(500, low=1)
    meta_batch_size: int = spec(20, low=1, doc="tasks per meta-iteration (T)")
    episodes_per_task: int = spec(20, low=1, doc="episodes per task and inner step (E)")
    eval_episodes: int | None = spec(
        None, low=1, doc="episodes per task and inner step in `metarl evaluate` (None: "
        "episodes_per_task)")
    eval_samples: int | None = spec(
        None, low=1, doc="`metarl evaluate`: at least this many steps per task and inner step, "
        "in whole episodes (rounds of eval_episodes until every task has them); the MAML "
        "paper's test scripts take 4000. None: eval_episodes episodes, however long")
    horizon: int = spec(100, low=1, doc="maximum steps per episode (H)")
    inner_lr: float = spec(0.1, low=0, low_open=True)
    inner_steps: int = spec(1, low=1)
    multi_step_loss: bool = spec(
        False, doc="outer objective and KL bound: the mean over k = 1..inner_steps of the "
        "policies after k inner steps, each on the episodes it sampled (MAML++'s multi-step "
        "loss, for RL: no extra sampling); false: after the last step only (MAML)")
    first_order: bool = False
    inner_objective: Literal["reinforce", "lvc", "dice"] = "reinforce"
    hidden_sizes: list[int] = spec([100, 100], low=1)
    activation: Literal["relu", "tanh"] = "relu"
    init_std: float = spec(1.0, low=0, low_open=True)
    policy_init: Literal["torch", "xavier"] = spec(
        "torch", doc="initial weights of the policy's MLP: torch (nn.Linear's default, "
        "uniform weights and biases); xavier (Glorot-uniform weights, zero biases: the MAML "
        "paper's code and pytorch-maml-rl)")
    gamma: float = spec(0.99, low=0, high=1)
    gae_lambda: float = spec(1.0, low=0, high=1)
    max_kl: float = spec(0.01, low=0, low_open=True)
    fisher: Literal["exact", "adapted", "autograd"] = spec(
        "exact", doc="Fisher-vector products: exact (through the adaptation, J^T F J, second "
        "order); adapted (Fisher of the adapted policies only; the line search keeps the exact "
        "KL); autograd (exact by third-order autograd, the slow reference)")
    fisher_backend: Literal["auto", "structured", "autograd"] = spec(
        "auto", doc="how exact and adapted products are computed: structured (written out for "
        "metarl's MLP policies, ~2x faster), autograd (double backward, any model), auto "
        "(structured where the policy allows it)")
    fisher_dtype: Literal["float32", "bfloat16"] = spec(
        "float32", doc="precision of the Fisher-vector products inside conjugate gradient "
        "(structured products only): bfloat16 runs their matmuls 2-3x faster where the CPU or "
        "GPU has bfloat16 units; the gradient and the line search's KL stay float32")
    fisher_fraction: float = spec(
        1.0, low=0, low_open=True, high=1,
        doc="share of each task's validation episodes used in Fisher-vector products")
    cg_iters: int = spec(10, low=1)
    cg_damping: float = spec(1e-5, low=0)
    cg_preconditioner: Literal["none", "kfac"] = spec(
        "none", doc="conjugate gradient preconditioner: none, or kfac (per-layer Kronecker "
        "factors of the adapted policies' Fisher, pooled over tasks; MLP policies only)")
    kfac_damping: float = spec(
        0.1, low=0, low_open=True,
        doc="K-FAC damping, relative to the mean eigenvalues of the Kronecker factors")
    line_search_steps: int = spec(15, low=1)
    line_search_ratio: float = spec(0.8, low=0, low_open=True, high=1)
    validation_tasks: int | None = spec(
        None, low=1, doc="choose best.pt on this many fixed validation tasks (the mean return "
        "after 1..validation_steps inner steps, every validate_every iterations); None: on "
        "each training meta-batch's return after the inner steps (the paper's rule, which "
        "favours easy batches)")
    validation_steps: int | None = spec(
        None, low=1, doc="inner steps of the validation (None: inner_steps)")
    validate_every: int = spec(10, low=1)
    checkpoint_every: int = spec(10, low=1)
    keep_checkpoint_every: int | None = keep_checkpoint_spec()
    log_every: int = spec(1, low=1)
    time_limit_minutes: float | None = time_limit_spec()

    @property
    def training_inner_steps(self) -> int:
        """Inner steps during meta-training: the comparison methods train without adaptation.

        pretrained and oracle: one policy trained with TRPO on the task distribution;
        random: no training at all. All are fine-tuned the same way at test time.
        """
        return self.inner_steps if self.method in ("maml", "metasgd", "anil") else 0

    def validate(self) -> None:
        if self.multi_step_loss and self.training_inner_steps < 2:
            raise ConfigError("config key 'multi_step_loss': needs inner_steps >= 2 and a "
                              "method that adapts (maml, metasgd, anil)")
        if self.multi_step_loss and self.cg_preconditioner == "kfac":
            raise ConfigError("config key 'cg_preconditioner': kfac is built on the last "
                              "step's policies only; use none with multi_step_loss")
        if self.fisher_dtype != "float32" and (self.fisher == "autograd"
                                               or self.fisher_backend == "autograd"):
            raise ConfigError("config key 'fisher_dtype': bfloat16 products are the structured "
                              "ones; use fisher exact or adapted with fisher_backend auto or "
                              "structured")
        if self.method == "metasgd" and self.fisher == "adapted":
            raise ConfigError("config key 'fisher': adapted has no curvature for Meta-SGD's "
                              "rates; use exact or autograd with method metasgd")
        if self.method == "metasgd" and self.cg_preconditioner == "kfac":
            raise ConfigError("config key 'cg_preconditioner': kfac covers the policy's "
                              "parameters, not Meta-SGD's rates; use none with method metasgd")

