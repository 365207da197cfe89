"""MAML for reinforcement learning: sampler, returns, baseline, losses, TRPO."""
