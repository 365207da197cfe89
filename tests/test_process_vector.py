"""BlockVectorEnv: envs split over worker processes step exactly like one SyncVectorEnv."""

import numpy as np

from envs.navigation import Navigation2DFamily


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
