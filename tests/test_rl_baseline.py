import numpy as np
import pytest
import torch

from metarl.rl.baseline import (
    features,
    fit_linear_baseline,
    linear_baseline_values,
    num_features,
    predict,
)
from metarl.rl.returns import discounted_returns

T, E, H, D = 3, 5, 8, 2


def random_batch(seed=0, lengths=None):
    g = torch.Generator().manual_seed(seed)
    obs = 4 * torch.randn(T, E, H, D, generator=g)  # some entries beyond the clip at 10
    obs[0, 0, 0, 0] = 25.0
    rewards = torch.randn(T, E, H, generator=g)
    if lengths is None:
        lengths = torch.randint(1, H + 1, (T, E), generator=g)
    mask = (torch.arange(H) < lengths.unsqueeze(-1)).float()
    returns = discounted_returns(rewards, mask, 0.99)
    return obs, returns, mask


def numpy_ridge(obs, returns, mask, reg):
    """Per task: numpy lstsq on the valid rows of rllab's feature matrix, same ridge term."""
    out = []
    for t in range(T):
        rows = []
        for e in range(E):
            for h in range(H):
                if mask[t, e, h] > 0:
                    o = np.clip(obs[t, e, h].double().numpy(), -10, 10)
                    s = h / 100.0
                    rows.append(np.concatenate([o, o**2, [s, s**2, s**3, 1.0]]))
        x = np.array(rows)
        y = returns[t].double().numpy()[mask[t].numpy() > 0]
        a = x.T @ x + reg * np.eye(x.shape[1])
        out.append(np.linalg.lstsq(a, x.T @ y, rcond=None)[0])
    return torch.tensor(np.array(out))


def test_features_layout_and_padding():
    obs, _, mask = random_batch()
    f = features(obs, mask)
    assert f.shape == (T, E, H, num_features(D))
    assert (f[mask == 0] == 0).all()
    assert f[0, 0, 0, 0] == 10.0 and f[0, 0, 0, D] == 100.0  # clipped obs, obs^2
    valid = mask[1, 1] > 0
    torch.testing.assert_close(f[1, 1, valid, 2 * D], torch.arange(H)[valid].float() / 100)
    assert (f[..., -1] == mask).all()


@pytest.mark.parametrize("reg", [1e-5, 1e-1])
def test_fit_matches_numpy_per_task(reg):
    obs, returns, mask = random_batch()
    weights = fit_linear_baseline(obs, returns, mask, reg)
    assert weights.shape == (T, num_features(D))
    torch.testing.assert_close(weights, numpy_ridge(obs, returns, mask, reg), rtol=1e-6, atol=1e-6)


def test_episodes_ending_after_one_step():
    """Every episode one step long: the time features are all zero, the system is
    singular without the ridge term; the fit must stay finite and match numpy."""
    obs, returns, mask = random_batch(1, lengths=torch.ones(T, E, dtype=torch.long))
    weights = fit_linear_baseline(obs, returns, mask)
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights, numpy_ridge(obs, returns, mask, 1e-5), rtol=1e-6, atol=1e-6)


def test_predict_fits_returns_and_zeros_padding():
    obs, returns, mask = random_batch(2)
    values = linear_baseline_values(obs, returns, mask)
    assert values.shape == (T, E, H) and values.dtype == obs.dtype
    assert (values[mask == 0] == 0).all()
    # A least-squares fit with a constant feature leaves residuals with mean ~0 per task.
    residual = ((returns - values) * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2))
    assert residual.abs().max() < 1e-3
    # Returns that are an exact linear function of the features are reproduced.
    w = torch.randn(T, num_features(D), dtype=torch.float64)
    exact = predict(w, obs, mask)
    torch.testing.assert_close(linear_baseline_values(obs, exact, mask, reg=1e-10), exact,
                               rtol=1e-4, atol=1e-4)


def test_tiny_ridge_retries_until_solvable():
    """Collinear features (obs dims identical): with a ridge of 1e-14 the Cholesky
    factorisation fails for every task here (measured), with 1e-11 for none. The
    retries (x10 per failed task) must end in a finite fit as good as least squares."""
    obs, returns, mask = random_batch(3)
    obs[..., 1] = obs[..., 0]
    values = linear_baseline_values(obs, returns, mask, reg=1e-14)
    assert torch.isfinite(values).all()
    x = features(obs.double(), mask.double())
    for t in range(T):
        valid = mask[t] > 0
        rows, y = x[t][valid].numpy(), returns[t][valid].double().numpy()
        best = np.linalg.lstsq(rows, y, rcond=None)[0]
        best_error = np.mean((rows @ best - y) ** 2)
        error = np.mean((values[t][valid].double().numpy() - y) ** 2)
        assert error <= best_error * (1 + 1e-4) + 1e-10
    with pytest.raises(RuntimeError, match="not solvable"):
        fit_linear_baseline(obs, returns, mask, reg=1e-300)  # 5 tries reach only 1e-296


def test_argument_checks():
    obs, returns, mask = random_batch()
    with pytest.raises(ValueError, match="obs must be"):
        features(obs[0], mask)
    with pytest.raises(ValueError, match="reg"):
        fit_linear_baseline(obs, returns, mask, reg=0.0)
    obs[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        fit_linear_baseline(obs, returns, mask)
