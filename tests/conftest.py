import os

# Tests are small: one thread each avoids oversubscribing CI's two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
