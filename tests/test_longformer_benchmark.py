"""The Longformer benchmark's workloads on a tiny config: the contenders compute the same function, the
memory tracker sees ours linear in the length and below transformers', and the sweep and window comparison
run and plot. (The figures themselves are measured by the script, not by tests.)"""

import argparse

import pytest
import torch

from hubformers.scripts.benchmark_longformer import (
    PeakMemory,
    compare_windows,
    inputs,
    models,
    peak_memory,
    plot,
    sweep,
    workload,
)

TINY = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "vocab_size": 500,
}


def arguments(**values) -> argparse.Namespace:
    defaults = dict(
        config=TINY,
        length=128,
        attention_window=32,
        global_tokens=1,
        batch_size=1,
        repeats=1,
        warmup=0,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    return argparse.Namespace(**{**defaults, **values})


def test_contenders_agree():
    work = workload(arguments())
    ours, reference = work.contenders
    with torch.no_grad():
        assert (ours.forward() - reference.forward()).abs().max() <= 1e-5
    assert work.forward_flops > 0 and work.modes == ("forward",)


def test_peak_memory_is_linear_in_length_and_below_transformers():
    ours, reference = models(TINY, 1024, 32)
    peaks = {}
    for length in (512, 1024):
        batch = inputs(1, length, 1, 500)
        peaks[length] = peak_memory(ours, lambda batch=batch: ours(**batch))
        if length == 1024:
            assert peaks[length] < 0.8 * peak_memory(reference, lambda batch=batch: reference(**batch))
    assert 1.7 < peaks[1024] / peaks[512] < 2.3


def test_tracker_ignores_existing_tensors_and_frees():
    weight = torch.randn(1000, 1000)
    with PeakMemory([weight]) as tracker:
        view = weight.t()  # a view of an existing storage: nothing new
        product = weight @ weight  # 4 MB
        del product
        again = weight @ weight
    assert tracker.peak == 4_000_000 and tracker.current == 4_000_000
    del view, again


@pytest.mark.slow  # builds and times six small models
def test_sweep_and_windows_run_and_plot(tmp_path):
    results = sweep(arguments(sweep=[128, 256], full_max_length=128))
    assert set(results["seconds"]) == {"ours", "transformers", "full attention"}
    assert set(results["seconds"]["full attention"]) == {128}
    plot(results, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    windows = compare_windows(arguments(windows=[16, 32]))
    assert set(windows["w16_over_w32"]) >= {"ours attention", "ours model", "transformers model"}
