import pytest
import torch

from metarl.rl.returns import (
    discounted_returns,
    generalized_advantages,
    masked_mean_per_task,
    normalize_per_task,
)

T, E, H = 3, 4, 7


def random_batch(seed=0):
    """Rewards, values and a mask with early terminations (some episodes 1 step long)."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, E, H, generator=g, dtype=torch.float64)
    values = torch.randn(T, E, H, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, H + 1, (T, E), generator=g)
    lengths[0, 0], lengths[1, 1] = 1, H
    mask = (torch.arange(H) < lengths.unsqueeze(-1)).double()
    # Garbage on padding must not leak into any output.
    rewards = torch.where(mask > 0, rewards, torch.full_like(rewards, 1e6))
    values = torch.where(mask > 0, values, torch.full_like(values, -1e6))
    return rewards, values, mask, lengths


def slow_returns(rewards, lengths, gamma):
    out = torch.zeros_like(rewards)
    for t in range(T):
        for e in range(E):
            for h in range(int(lengths[t, e])):
                out[t, e, h] = sum(gamma ** (k - h) * rewards[t, e, k].item()
                                   for k in range(h, int(lengths[t, e])))
    return out


def slow_gae(rewards, values, lengths, gamma, lam):
    out = torch.zeros_like(rewards)
    for t in range(T):
        for e in range(E):
            n = int(lengths[t, e])
            v = [values[t, e, h].item() for h in range(n)] + [0.0]
            deltas = [rewards[t, e, h].item() + gamma * v[h + 1] - v[h] for h in range(n)]
            for h in range(n):
                out[t, e, h] = sum((gamma * lam) ** (k - h) * deltas[k] for k in range(h, n))
    return out


@pytest.mark.parametrize("gamma", [0.0, 0.9, 1.0])
def test_discounted_returns_match_loop(gamma):
    rewards, _, mask, lengths = random_batch()
    expected = slow_returns(rewards, lengths, gamma)
    torch.testing.assert_close(discounted_returns(rewards, mask, gamma), expected)


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (1.0, 1.0), (0.9, 0.0), (0.5, 0.3)])
def test_gae_matches_loop(gamma, lam):
    rewards, values, mask, lengths = random_batch(1)
    expected = slow_gae(rewards, values, lengths, gamma, lam)
    torch.testing.assert_close(generalized_advantages(rewards, values, mask, gamma, lam), expected)


def test_gae_special_cases():
    rewards, values, mask, _ = random_batch(2)
    gamma = 0.9
    # lambda = 1: returns minus values.
    returns = discounted_returns(rewards, mask, gamma)
    torch.testing.assert_close(generalized_advantages(rewards, values, mask, gamma, 1.0),
                               (returns - values) * mask)
    # lambda = 0: the TD residual, with V = 0 after the end of the episode.
    v = values * mask
    next_v = torch.cat([v[..., 1:], torch.zeros_like(v[..., :1])], -1)
    torch.testing.assert_close(generalized_advantages(rewards, values, mask, gamma, 0.0),
                               (rewards + gamma * next_v - v) * mask)


def test_normalize_per_task_uses_valid_steps_only():
    rewards, _, mask, _ = random_batch(3)
    out = normalize_per_task(rewards, mask)
    for t in range(T):
        valid = out[t][mask[t] > 0]
        assert abs(valid.mean().item()) < 1e-12
        assert valid.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
    assert (out[mask == 0] == 0).all()


def test_masked_mean_per_task():
    rewards, _, mask, _ = random_batch(4)
    expected = torch.stack([rewards[t][mask[t] > 0].mean() for t in range(T)])
    torch.testing.assert_close(masked_mean_per_task(rewards, mask), expected)
    assert masked_mean_per_task(rewards, torch.zeros_like(mask)).eq(0).all()


def test_argument_checks():
    rewards, values, mask, _ = random_batch()
    with pytest.raises(ValueError, match="same"):
        discounted_returns(rewards, mask[:, :, :-1], 0.9)
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(rewards, mask, 1.5)
    with pytest.raises(ValueError, match="lam"):
        generalized_advantages(rewards, values, mask, 0.9, -0.1)
