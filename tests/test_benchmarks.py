"""The benchmark scripts still run (tiny settings, one round each).

The benchmarks are run on demand, never imported by the library, so a change to the code they
call can break them unnoticed: ``bench_population.py`` built its so-TURTLE population without the
setting's per-task clamp until this test existed. (The 004 diagnostics live beside their record,
``reproductions/turtle-table6-thesis-data/diag_turtle_*.py``, tested in ``test_reproductions.py``.) Each script runs in its own process (they set
torch's thread count) and must print the line its README row promises; the timings themselves
are not checked here (see ``benchmarks/README.md``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    # T=10: the so-TURTLE spec whose population clamps each task's meta-gradient
    "bench_population.py": (["--steps", "10", "--members", "2", "--rounds", "1", "--iters", "1", "--no-compile"],
                            ["so-MAML T=10, 2 seeds", "so-TURTLE T=10, 2 seeds", "LSTM T=10, 2 seeds"]),
    "bench_threads.py": (["--steps", "1", "--shots", "5", "--seeds", "1", "--tasks", "8", "--rounds", "1"],
                         ["speed-up of 2 threads over 1"]),
    # higher / torchopt live in their own environment: here metagrad alone (and higher where installed)
    "bench_peers.py": (["--rounds", "1", "--iters", "1"], ["meta-gradient in float64 on one batch", "  metagrad  "]),
    "bench_sine.py": (["--rounds", "1", "--iters", "1", "--no-compile", "--no-memory"],
                      ["vmap:second_order", "loop:first_order"]),
    "bench_conv4.py": (["--rounds", "1", "--warmup", "0", "--meta-batch", "2", "--no-memory", "--threads", "1", "--flops"],
                       ["metagrad vmap second_order", "metagrad loop first_order", "| bare convolutions |"]),
    "bench_data_conv.py": (["--ways", "5", "--steps", "2", "--meta-batch", "2", "--rounds", "1"],
                           ["| torch conv |", "| data conv |", "torch conv / data conv per round"]),
    "bench_table3.py": (["--cells", "MT-net_5way,MAML_20way", "--compare-compose", "--rounds", "1",
                         "--set", "outer.meta_batch=2", "--set", "model.hidden=8"],
                        ["| MT-net_5way |", "| MAML_20way |", "| MT-net_5way (T as a 1x1 convolution) |",
                         "MT-net_5way: two convolutions / composed per round"]),
    # the per-operator attribution (a second key: CASES is keyed by script)
    "bench_table3.py --ops": (["--cells", "MAML_20way", "--ops", "--top", "5", "--set", "outer.meta_batch=2",
                               "--set", "model.hidden=8"],
                              ["MAML_20way:", "| aten call (shapes as vmap hands them on) | calls | ms | share |",
                               "convolution_backward"]),
    "bench_conv_layouts.py": (["--rounds", "1"], ["| 5-way (32 tasks of 5 images) | data |",
                                                  "| 20-way (16 tasks of 20 images) | gW |"]),
    "bench_snail.py": (["--rounds", "1", "--iters", "1", "--warmup", "0", "--meta-batch", "2", "--threads", "1"],
                       ["| sine-snail |", "| omniglot-snail |"]),
    "bench_memory.py": (["--batches", "2", "--modes", "first_order"], ["| 2 | first_order |"]),
    "bench_quadratic.py": (["--dims", "3", "30", "--batch", "4", "--rounds", "1", "--iters", "1", "--no-memory"],
                           ["| 30 |", "log-log slope of time"]),
    # meta-batch 2, one round of one iteration: every module class of the zoo, vmap and loop
    "bench_modules.py": (["--quick"], ["| LayerNorm |", "| BatchNorm1d (running stats, train) |", "| LSTM |",
                                       "| TransformerEncoderLayer |", "| loop / vmap |"]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_script_runs(script: str) -> None:
    args, expected = CASES[script]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script.split()[0]), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{script} {' '.join(args)} failed:\n{out.stderr[-3000:]}"
    for line in expected:
        assert line in out.stdout, f"{script}: {line!r} not in its output:\n{out.stdout[-3000:]}"


def test_the_device_check_runs_on_the_cpu(tmp_path) -> None:
    """``device_check.sh`` with ``DEVICE=cpu`` and tiny settings: every part runs and passes (on a GPU
    machine the same script compares the GPU with the CPU and times it there)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEVICE": "cpu", "OUT": str(tmp_path / "out"), "ITERS": "2",
           "PYTHON": sys.executable, "CONV4_ARGS": "--rounds 1 --warmup 0 --meta-batch 2 --no-memory --threads 1"}
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    log = (tmp_path / "out" / "device_check.log").read_text()
    for line in ("=== tests", "passed", "metagrad vmap second_order", "omniglot-5w1s-maml on cpu: {",
                 "failed parts: none"):
        assert line in log, f"{line!r} not in the device check's log:\n{log[-3000:]}"


def test_device_continue_carries_a_record_run_there_and_back(tmp_path) -> None:
    """``device_continue.sh`` with ``DEVICE=cpu``: a run cut by its time limit "there" comes back as a
    resume point that continues "here"; continued there to its end, it comes back as a summary and a
    kept run, and the resume point is removed here (a quick record: 60 iterations of sine MAML)."""
    def call(**env: str) -> str:
        out = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_continue.sh")], cwd=ROOT,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
                                  "RECORD": "mtnet-table1", "QUICK": "1", "SET": "outer.iterations=60 eval.tasks=20",
                                  **env},
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
        return out.stdout
    there, here = str(tmp_path / "there"), str(tmp_path / "here")
    cells = tmp_path / "here" / "mtnet-table1" / "cells"
    # a limit of 10 ms is past before the first iteration ends: exactly one iteration, checkpointed (with 1 s a
    # quiet machine trained several, and the table's iteration count varied)
    call(RECORDS=there, OUT=str(tmp_path / "b1"), ONLY="model=MAML", LIMIT="0.01s", DEVICE="cpu")
    assert sorted(p.name for p in (tmp_path / "b1" / "cells").iterdir()) == ["MAML_s0.partial.pt", "MAML_s0.progress.json"]
    call(RECORDS=here, APPLY=str(tmp_path / "b1"))
    assert "MAML (0 of 1 runs; training s0: iteration 1 of 60" in (cells.parent / "table.md").read_text()
    call(RECORDS=there, OUT=str(tmp_path / "b2"), ONLY="model=MAML", LIMIT="10m", DEVICE="cpu")
    assert (tmp_path / "b2" / "removed.txt").read_text().split() == ["MAML_s0.partial.pt", "MAML_s0.progress.json"]
    call(RECORDS=here, APPLY=str(tmp_path / "b2"))
    assert sorted(p.name for p in cells.iterdir()) == ["MAML_s0.json", "MAML_s0.run.pt"]
    assert "| MAML | k_shot=5, steps=1 |" in (cells.parent / "table.md").read_text()


def test_every_benchmark_script_is_smoke_tested() -> None:
    helpers = {"l2l_stub.py", "timing.py", "op_times.py"}   # imported by the scripts, not run
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - helpers
    tested = {case.split()[0] for case in CASES}
    assert scripts == tested, f"benchmarks without a smoke test: {sorted(scripts - tested)}"


def test_the_median_interval_is_the_order_statistics_that_cover_the_median():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from timing import median_interval
    assert median_interval(range(1, 10)) == (2, 8)      # n = 9: P(B(9, 1/2) <= 1) = 0.0195 <= 0.025
    assert median_interval(range(1, 16)) == (4, 12)     # n = 15: P(B <= 3) = 0.0176, P(B <= 4) = 0.059
    assert median_interval([3, 1, 2]) == (1, 3)         # too few rounds for 95%: the range
    import random
    rng, n, hits = random.Random(0), 9, 0
    for _ in range(4000):   # coverage of a skewed distribution's median (log 2 for the exponential)
        lo, hi = median_interval([rng.expovariate(1.0) for _ in range(n)])
        hits += lo <= 0.6931 <= hi
    assert 0.94 < hits / 4000 < 0.98   # 96.1% in theory for n = 9


def test_cpu_description_names_the_model_and_the_kernels_instruction_set() -> None:
    """Ratios against learn2learn moved between hosts (AVX-512 helps oneDNN's large convolutions more
    than a loop of small calls), so the conv4 benchmark prints the CPU it ran on."""
    import torch
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from timing import cpu_description
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    text = cpu_description()
    assert text.endswith(", " + torch.backends.cpu.get_cpu_capability()), text
    assert len(text.split(", ")[0]) > 0, text
