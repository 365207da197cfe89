"""Videos of a MuJoCo policy before and after adaptation, rendered off-screen.

The inner steps are the evaluation's (``rl.evaluate.adapted_rollouts``: fresh
episodes per step on held-out tasks); each adapted policy then drives one single
env of its task with the mean action, rendered by MuJoCo's renderer. The frames of
all (task, step) pairs are tiled: one row per task, one column per step; the
camera is the models' ``track`` camera, which follows the body.
Headless machines need EGL or OSMesa (``MUJOCO_GL``; ``egl`` is set when unset).
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import torch

from metarl.functional import call, select_task
from metarl.rl.evaluate import adapted_rollouts, inner_rates, load_policy


class RenderError(RuntimeError):
    """Rendering is not possible here (no GL context, no video writer)."""


def policy_frames(env, policy, params, horizon: int, seed: int) -> list[np.ndarray]:
    """RGB frames (H, W, 3) of one episode with the policy's mean action."""
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    for _ in range(horizon):
        with torch.no_grad():
            dist = call(policy, params, torch.as_tensor(obs, dtype=torch.float32)[None])
        action = dist.mean[0].numpy().clip(env.action_space.low, env.action_space.high)
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(env.render())
        if terminated or truncated:
            break
    return frames


def task_label(task: dict) -> str:
    """{"direction": 1.0} -> "direction +1"; arrays as their entries."""
    parts = []
    for key, value in task.items():
        values = np.atleast_1d(np.asarray(value, dtype=np.float64))
        parts.append(f"{key} " + ", ".join(f"{v:+.2g}" for v in values))
    return "; ".join(parts)


def labelled(frames: list[np.ndarray], text: str) -> list[np.ndarray]:
    """The frames with ``text`` written in their top-left corner."""
    from PIL import Image, ImageDraw

    out = []
    for frame in frames:
        image = Image.fromarray(frame)
        ImageDraw.Draw(image).text((6, 4), text, fill=(0, 0, 0))
        out.append(np.asarray(image))
    return out


def tile(rows: list[list[list[np.ndarray]]]) -> list[np.ndarray]:
    """rows[task][step] = frames -> one frame sequence of the grid (shorter ones hold)."""
    length = max(len(f) for row in rows for f in row)
    grid = []
    for i in range(length):
        lines = [np.concatenate([f[min(i, len(f) - 1)] for f in row], axis=1) for row in rows]
        grid.append(np.concatenate(lines, axis=0))
    return grid


def render_adaptation(run_dir: str | Path, family, out: str | Path, num_tasks: int = 2,
                      steps: int = 1, seed: int = 12345, checkpoint: str = "best.pt",
                      size: tuple[int, int] = (240, 320), strip: str | Path | None = None,
                      fps: int = 20) -> Path:
    """Write ``out`` (.gif, or .mp4 with imageio-ffmpeg) and optionally a frame strip PNG."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise RenderError("writing video needs imageio: pip install 'metarl[render]'") from None
    if Path(out).suffix not in (".gif", ".mp4"):
        raise RenderError(f"video path must end in .gif or .mp4, got {out}")
    config, state, policy = load_policy(run_dir, family, checkpoint)
    episodes = config.eval_episodes or config.episodes_per_task
    adapted = list(adapted_rollouts(policy, family, config, num_tasks, episodes, steps, seed,
                                    rates=inner_rates(state)))
    tasks = adapted[0][0]
    rows = []
    for t, task in enumerate(tasks):
        env = family.env_cls(task, render_mode="rgb_array", **family.env_kwargs)
        renderer = env.mujoco_renderer  # set before the first frame, which builds the viewer
        renderer.height, renderer.width = size
        renderer.camera_id = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
        try:
            rows.append([labelled(policy_frames(env, policy, select_task(params, t),
                                                config.horizon, seed + t),
                                  f"{task_label(task)}, after {k} step{'s' * (k != 1)}")
                         for k, (_, params, _) in enumerate(adapted)])
        except Exception as err:  # GL errors come as several types, all one cause
            raise RenderError(f"MuJoCo could not render off-screen ({type(err).__name__}: "
                              f"{err}); install EGL or OSMesa and set MUJOCO_GL=egl or "
                              "osmesa") from None
        finally:
            env.close()
    frames = tile(rows)
    if Path(out).suffix == ".mp4":
        try:
            imageio.mimwrite(out, frames, fps=fps)
        except (ImportError, ValueError, RuntimeError) as err:
            raise RenderError(f"writing mp4 needs imageio-ffmpeg ({err}); write a .gif "
                              "instead") from None
    else:
        imageio.mimwrite(out, frames, duration=1000 / fps, loop=0)
    if strip is not None:  # five moments of the grid, side by side
        picks = np.linspace(0, len(frames) - 1, 5).astype(int)
        imageio.imwrite(strip, np.concatenate([frames[i] for i in picks], axis=1))
    return Path(out)
