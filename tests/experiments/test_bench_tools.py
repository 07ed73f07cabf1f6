"""The measuring tools of ``experiments/bench``: per-call CPU time and page faults in
``timing.interleave``, ``profile_step``'s kinds of instruction and wall time, and
``conv_epilogue``'s reading of which library runs a convolution, and the commit a
measurement is stamped with (``provenance``).

The benchmarks themselves (minutes to hours, PyTorch as the peer) are not tests; their
results are committed under ``experiments/bench``.
"""

import mmap
import subprocess

import jax
import jax.numpy as jnp
import pytest

from experiments.bench import (
    conv_epilogue,
    cpu_split,
    eval_bench,
    profile_step,
    provenance,
    timing,
)
from ssl_jax.train import xla_cpu

_PAGES = 4096


def _touch_fresh_pages():
    """Writes one byte to each of ``_PAGES`` pages of a new anonymous mapping."""
    page = mmap.PAGESIZE
    with mmap.mmap(-1, _PAGES * page) as m:
        m.madvise(mmap.MADV_NOHUGEPAGE)  # one fault per 4-KiB page, whatever the THP mode
        for i in range(_PAGES):
            m[i * page] = 1


def _spin():
    """Pure user-space work: no system calls, no new memory."""
    return sum(range(3_000_000))


def test_interleave_attributes_faults_and_cpu_time_to_each_call():
    t = timing.interleave(
        {"touch": _touch_fresh_pages, "spin": _spin, "idle": lambda: None}, reps=3
    )
    assert set(t["touch"]) >= {"median_s", "times_s", "user_s", "sys_s", "minor_faults"}
    # Every page of a fresh mapping faults once when first written; nothing else here does.
    assert _PAGES <= t["touch"]["minor_faults"] < _PAGES + 512
    assert t["idle"]["minor_faults"] < 64 and t["spin"]["minor_faults"] < 64
    # The spinning call's CPU time (tens of ms, however loaded the machine) is user time.
    assert t["spin"]["user_s"] >= 0.01 and t["spin"]["sys_s"] < 0.2 * t["spin"]["user_s"]
    assert t["idle"]["user_s"] + t["idle"]["sys_s"] < 0.5 * t["spin"]["user_s"]


def _conv_loss(x, w1, w2):
    dn = ("NHWC", "HWIO", "NHWC")
    h = jax.nn.relu(jax.lax.conv_general_dilated(x, w1, (1, 1), "SAME", dimension_numbers=dn))
    y = jax.lax.conv_general_dilated(h, w2, (1, 1), "SAME", dimension_numbers=dn)
    return jnp.mean(y**2)


def test_categorize_tells_the_three_convolutions_apart_with_and_without_step_options():
    x, w1, w2 = jnp.ones((8, 16, 16, 16)), jnp.ones((3, 3, 16, 32)), jnp.ones((3, 3, 32, 32))
    grad = jax.jit(jax.grad(_conv_loss, argnums=(0, 1, 2))).lower(x, w1, w2)
    for options in (dict(xla_cpu.CPU_STEP_OPTIONS), {}):
        kinds = set(profile_step.categorize(grad.compile(options).as_text()).values())
        assert {"conv forward", "conv weight gradient", "conv input gradient"} <= kinds


def test_profile_returns_time_by_kind_and_the_wall_time():
    def f(x):
        return jnp.sum(jnp.tanh(x) * 2 + jnp.sin(x), axis=0)

    x = jnp.linspace(0, 1, 512 * 1024).reshape(512, 1024)
    compiled = jax.jit(f).lower(x).compile()
    out = profile_step.profile(compiled, lambda: jax.block_until_ready(compiled(x)), steps=2)
    assert set(out) == {"by_kind", "wall_ms"} and out["wall_ms"] > 0
    # The sum over rows is a reduction thunk, which runs synchronously and is traced.
    assert out["by_kind"].get("reduction", 0) > 0
    assert all(ms >= 0 for ms in out["by_kind"].values())


_FUSED = """%fused_computation.7 (p0: f32[2,4,4,8], p1: f32[3,3,8,8]) -> f32[2,4,4,8] {
  %convolution.1 = f32[2,4,4,8]{3,2,1,0} convolution(%p0, %p1), window={size=3x3}
}

ENTRY %main (a: f32[2,4,4,8], b: f32[3,3,8,8]) -> f32[2,4,4,8] {
  ROOT %ynn_fusion = f32[2,4,4,8]{3,2,1,0} fusion(%a, %b), kind=kCustom, \
calls=%fused_computation.7, backend_config={"fusion_config":{"kind":"__ynn_fusion"}}
}
"""


def test_conv_epilogue_reads_the_library_off_the_compiled_module():
    assert conv_epilogue.engine(_FUSED) == "YNNPACK"
    assert conv_epilogue.engine(_FUSED.replace("__ynn_fusion", "")) == "Eigen"
    out = conv_epilogue.measure(batch=2, size=4, channels=8, reps=1)
    assert set(out) == set(conv_epilogue.EPILOGUES)
    assert all(r["engine"] in ("YNNPACK", "Eigen") and r["median_ms"] > 0 for r in out.values())
    # The step's options send convolutions to Eigen; a select after one keeps it there.
    assert out["none"]["engine"] == out["relu_mask"]["engine"] == "Eigen"


def test_conv_prologue_reads_which_relu_gives_the_convolution_to_ynnpack():
    # YNNPACK fuses only from about 8k elements (4 x 8 x 8 x 32, not 2 x 8 x 8 x 16).
    out = conv_epilogue.measure_prologue(batch=4, size=8, channels=32, reps=1)
    assert set(out) == {"none", "bn_relu_select", "bn_relu_max"}
    assert all(r["median_ms"] > 0 for r in out.values())
    # The select ReLU (batch_norm without autodiff) keeps the convolution on Eigen; the
    # max it had before is a YNNPACK prologue that takes the convolution in.
    engines = {n: r["engine"] for n, r in out.items()}
    assert engines == {"none": "Eigen", "bn_relu_select": "Eigen", "bn_relu_max": "YNNPACK"}


def test_eval_options_times_both_extractions_of_the_same_features():
    # A 2-stage ResNet: the benchmark's ResNet-18 compiles for longer than this needs.
    r = eval_bench.features_before_after(batch=4, num_batches=2, reps=1, stage_sizes=(1, 1))
    assert (r["batch"], r["images"], r["encoder"]) == (4, 8, "resnet(1, 1)")
    assert r["before_s"] > 0 and r["after_s"] > 0
    assert r["timings"]["before"]["median_s"] == r["before_s"]


_PERF_REPORT = """\
# Overhead       Samples  Shared Object     Symbol
# ........  ............  ................  ......
#
    60.00%          6000  [JIT] tid 2294    [.] 0x00007f0a13f970ec
     9.00%   900  libjax_common.so  [.] Eigen::internal::gemm_pack<Eigen::ThreadPoolDevice>::run
     5.00%           500  libjax_common.so  [.] ynn::dot_fp32_4x64x1_1x16x1_avx512
     4.00%           400  libjax_common.so  [.] ynn::multiply_fp32_x86_avx512f_avx512bw
     3.00%           300  libjax_common.so  [.] Eigen::ThreadPoolTempl<tsl::Env>::WorkerLoop(int)
     2.00%           200  [kernel.kallsyms]  [k] clear_page_erms
     1.00%           100  libgomp.so.1      [.] 0x000000000001e02a
     1.00%           100  libc.so.6         [.] __memmove_avx512_unaligned_erms
     1.00%           100  libtorch_cpu.so   [.] dnnl::impl::cpu::x64::brgemm_conv_t<1>::execute
     1.00%           100  libtorch_cpu.so   [.] at::native::add_kernel
"""


def test_cpu_split_sorts_samples_by_kind_of_code():
    # 1000 samples per CPU second over 2 steps: 6000 samples are 3 s per step.
    r = cpu_split.split(_PERF_REPORT, freq=1000, steps=2)
    want = dict(
        jit_code=3.0,
        eigen_pack=0.45,  # Eigen::ThreadPoolDevice among its template arguments is no pool
        ynnpack_dot=0.25,
        ynnpack_other=0.2,
        threading=0.2,  # the pool's worker loop and OpenMP
        kernel=0.1,
        libc=0.05,
        onednn_host=0.05,
        framework=0.05,
    )
    for kind in cpu_split.KINDS:
        assert r["cpu_s_per_step"][kind] == pytest.approx(want.get(kind, 0.0)), kind
    assert r["total_cpu_s_per_step"] == pytest.approx(sum(want.values()))
    assert r["top"][0] == ["[JIT]", pytest.approx(3.0)]


def test_commit_is_dirty_for_code_changes_not_for_the_benchmarks_own_outputs(tmp_path):
    def git(*args):
        run = subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
        return run.stdout.decode().strip()

    def write(names, text):
        for name in names:
            (bench / name).write_text(text)

    bench = tmp_path / "experiments" / "bench"
    (bench / "plots").mkdir(parents=True)
    outputs = ("details.json", "README.md", "plots/a.png")  # what a sitting rewrites
    write((*outputs, "run.py"), "0")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "m")
    head = git("rev-parse", "--short", "HEAD")
    assert provenance.commit(tmp_path, bench) == head
    write(outputs, "1")
    (bench / "new.txt").write_text("untracked")
    assert provenance.commit(tmp_path, bench) == head
    # Another output folder: the outputs of this one are code changes again.
    assert provenance.commit(tmp_path, tmp_path / "elsewhere") == head + "+dirty"
    write(outputs, "0")
    write(("run.py",), "1")  # the code measured
    assert provenance.commit(tmp_path, bench) == head + "+dirty"
