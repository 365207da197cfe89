import os

# Tests are small: one thread each avoids oversubscribing CI's two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Eager batch-norm kernels: compiling them costs seconds per test process;
# tests/test_conv_ops.py checks the compiled ones against these.
os.environ.setdefault("METARL_COMPILE", "0")

import torch  # noqa: E402

torch.set_num_threads(1)
