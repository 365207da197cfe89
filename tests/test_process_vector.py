"""BlockVectorEnv: envs split over worker processes step exactly like one SyncVectorEnv."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs.navigation import Navigation2DFamily

ROOT = Path(__file__).resolve().parents[1]


def test_block_vector_env_equals_sync_through_autoresets_and_task_changes():
    family = Navigation2DFamily(max_episode_steps=7)
    rng = np.random.default_rng(0)
    tasks = family.sample_tasks(rng, 3)
    sync = family.make_vector_env(tasks, 3, vectorization="sync")
    blocks = family.make_vector_env(tasks, 3, vectorization="processes")
    try:
        for round_ in range(2):
            if round_:  # new tasks, same envs
                tasks = family.sample_tasks(rng, 3)
                sync.set_tasks(tasks)
                blocks.set_tasks(tasks)
            a, b = sync.reset(seed=5 + round_)[0], blocks.reset(seed=5 + round_)[0]
            np.testing.assert_array_equal(a, b)
            for action in rng.uniform(-1, 1, size=(12, 9, 2)):  # past the time limit
                for x, y in zip(sync.step(action)[:4], blocks.step(action)[:4]):
                    np.testing.assert_array_equal(x, y)
    finally:
        sync.close()
        blocks.close()


_FREED_PROBE = """
import sys
import numpy as np
from envs.process_vector import return_freed_blocks
def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096
if sys.argv[1] == 'fixed': assert return_freed_blocks()
a = np.ones(2**21); del a  # 16 MiB mapped and freed: glibc's default threshold rises past 8
b = np.ones(2**20); before = rss()  # 8 MiB, touched
del b
print((before - rss()) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_workers_return_freed_blocks_to_the_kernel():
    """An 8 MiB block freed after a 16 MiB one stays mapped under glibc's default
    (the heap's holes that grew ML10's worker); with the workers' setting it goes back."""
    def returned(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _FREED_PROBE, mode], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
        return float(out.split()[-1])

    assert returned("default") < 1
    assert returned("fixed") > 7
