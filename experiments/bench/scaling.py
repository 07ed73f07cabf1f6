"""Scaling points of the ssl_jax step, each measured in its own process by ``run.py``:
time and compile time against the number of (fake) CPU devices, and memory against the
Barlow Twins / VICReg embedding dimension. (Time and memory against batch size are the
``step`` measurements of ``step_bench.py`` at more batch sizes.)

Fake devices: ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` splits the same cores
into N XLA devices; the global batch stays fixed, so the curve shows what sharding the
batch over devices costs on one machine, not a speed-up.
"""

import jax
import torch

from experiments.bench import cases, jax_side, step_bench, timing
from experiments.bench.torch_ref.methods import Peer


def device_point(case: str, batch: int, reps: int) -> dict:
    """One point of the device curve (the process's XLA_FLAGS set the device count)."""
    c = cases.get(case).config(batch)
    views, labels = jax_side.make_views(c)
    jx = jax_side.JaxCase(c).setup(views, labels)
    t = timing.interleave({"jax": jx.step}, reps=reps)["jax"]
    mem = timing.peak_memory({"jax": jx.step})["jax"]
    return dict(
        devices=jax.device_count(),
        case=case,
        batch=batch,
        compile_s=jx.compile_s,
        step_s=t["median_s"],
        peak_added_mib=mem,
        xla_temp_mib=jx.memory_analysis()["xla_temp_mib"],
    )


def embedding_point(method: str, dim: int, batch: int, reps: int) -> dict:
    """Barlow Twins (both frameworks) or VICReg (ssl_jax) with a 3-layer, D-wide projector
    on the ConvNet (the growth with D is the projector's and the D x D matrices')."""
    torch.set_num_threads(step_bench.threads())
    c = jax_side.load_config(
        method, encoder="convnet", batch=batch, **{"head.proj_hidden": dim, "head.proj_dim": dim}
    )
    views, labels = jax_side.make_views(c)
    jx = jax_side.JaxCase(c).setup(views, labels)
    fns = {"jax": jx.step}
    if method == "barlow_twins":
        peer = Peer(c, channels_last=False)
        tv, tl = peer.to_torch(views), torch.from_numpy(labels).long()
        fns["torch"] = lambda: peer.step(tv, tl)
    t = timing.interleave(fns, reps=reps)
    mem = timing.peak_memory(fns)
    xla = jx.memory_analysis()
    return dict(
        method=method,
        dim=dim,
        batch=batch,
        jax_xla_temp_mib=xla["xla_temp_mib"],
        jax_xla_args_mib=xla["xla_args_mib"],
        **{f"{k}_peak_added_mib": v for k, v in mem.items()},
        **{f"{k}_step_s": v["median_s"] for k, v in t.items()},
    )
