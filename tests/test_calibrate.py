"""Calibration on the CPU with a tiny twin: sensible records, the cache (a hit measures nothing,
any change in the inputs measures again), the time budget, and refusals."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from progbench.errors import ConfigError, RegistryError
from progbench.sweep import calibrate as calibrate_module
from progbench.sweep.calibrate import CalibrationRecord, calibrate, calibration_file, device_slug

# Module fixtures build cohorts, trees or reports: on one xdist worker, so built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_calibrate")]

TWIN = "tiny-resnet"
STRATEGIES = ["lp", "fft", "vera-r4"]  # vera does not apply to a CNN
SMALL = {"device": "cpu", "batch_size": 4, "steps": 1, "warmup": 1}


@pytest.fixture(scope="module")
def measured_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[CalibrationRecord], Path]:
    cache = tmp_path_factory.mktemp("calibration-cache")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("PROGBENCH_CACHE", str(cache))
        return calibrate([TWIN], STRATEGIES, **SMALL), calibration_file("cpu")


@pytest.fixture
def measured(
    measured_once: tuple[list[CalibrationRecord], Path], cache_dir: Path
) -> list[CalibrationRecord]:
    """The module's one measurement, its cache file copied into this test's cache."""
    records, path = measured_once
    calibration_file("cpu").parent.mkdir(parents=True)
    shutil.copy(path, calibration_file("cpu"))
    return records


def _forbid_measuring(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def measure(backbone: str, *args: object, **kwargs: object) -> list[CalibrationRecord]:
        calls.append(backbone)
        raise AssertionError(f"{backbone} was measured again")

    monkeypatch.setattr(calibrate_module, "measure_backbone", measure)
    return calls


@pytest.mark.slow
def test_records_are_sensible(measured: list[CalibrationRecord]) -> None:
    by = {r.strategy: r for r in measured}
    assert [r.strategy for r in measured] == STRATEGIES
    for r in measured:
        assert (r.backbone, r.device, r.dtype, r.batch_size, r.input_size) == (
            TWIN,
            "cpu",
            "fp32",
            4,
            32,
        )
        assert r.peak_memory_mb is None  # no device memory to read on the CPU
    assert by["lp"].kind == "lp" and by["lp"].train_s_per_image is None  # LP's cost: extraction
    assert by["fft"].applicable and 0 < (by["fft"].train_s_per_image or 0) < 10
    # One frozen-forward timing per backbone, shared by every applicable strategy.
    assert by["lp"].extract_s_per_image == by["fft"].extract_s_per_image
    assert 0 < (by["lp"].extract_s_per_image or 0) < 10
    vera = by["vera-r4"]
    assert not vera.applicable and "Linear" in (vera.reason or "")
    assert vera.train_s_per_image is None and vera.extract_s_per_image is None


def test_second_call_is_a_cache_hit(
    measured: list[CalibrationRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = calibration_file("cpu")
    saved = json.loads(path.read_text())["records"]
    assert {r.key for r in measured} == set(saved)
    assert saved[measured[1].key] == asdict(measured[1])
    calls = _forbid_measuring(monkeypatch)
    assert calibrate([TWIN], STRATEGIES, **SMALL) == measured
    assert calibrate([TWIN], STRATEGIES[1:2], **SMALL) == measured[1:2]  # any subset hits too
    assert calls == []


def test_other_settings_or_versions_measure_again(
    measured: list[CalibrationRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _forbid_measuring(monkeypatch)
    for changed in ({"batch_size": 6}, {"steps": 2}, {"warmup": 0}, {"dtype": "bf16"}):
        with pytest.raises(AssertionError, match="measured again"):
            calibrate([TWIN], STRATEGIES, **(SMALL | changed))  # type: ignore[arg-type]
    versions = calibrate_module.library_versions() | {"torch": "0.0.0"}
    monkeypatch.setattr(calibrate_module, "library_versions", lambda: versions)
    with pytest.raises(AssertionError, match="measured again"):
        calibrate([TWIN], STRATEGIES, **SMALL)
    assert len(calls) == 5


def test_only_the_missing_strategies_are_measured(measured: list[CalibrationRecord]) -> None:
    more = calibrate([TWIN], ["fft", "bitfit"], **SMALL)
    assert more[0] == measured[1]  # fft: read back, not re-measured
    assert more[1].strategy == "bitfit" and (more[1].train_s_per_image or 0) > 0
    saved = json.loads(calibration_file("cpu").read_text())["records"]
    assert len(saved) == len(STRATEGIES) + 1


def test_cache_false_measures_and_writes_nothing(cache_dir: Path) -> None:
    records = calibrate([TWIN], ["lp"], cache=False, **SMALL)
    assert len(records) == 1 and not calibration_file("cpu").exists()


def test_budget_leaves_out_the_backbones_not_started(
    measured: list[CalibrationRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_measuring(monkeypatch)
    # The twin is cached (no time needed); with no time left, tiny-dinov2 is not started.
    records = calibrate([TWIN, "tiny-dinov2"], STRATEGIES, budget_s=0.0, **SMALL)
    assert records == measured


def test_bad_input_is_refused_before_any_work(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_measuring(monkeypatch)
    with pytest.raises(RegistryError, match="unknown backbone"):
        calibrate(["no-such-net"], ["fft"], **SMALL)
    with pytest.raises(RegistryError, match="unknown strategy"):
        calibrate([TWIN], ["no-such-strategy"], **SMALL)
    with pytest.raises(ConfigError, match="batch size"):
        calibrate([TWIN], ["fft"], **(SMALL | {"batch_size": 1}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="steps"):
        calibrate([TWIN], ["fft"], **(SMALL | {"steps": 0}))  # type: ignore[arg-type]


def test_device_file_names() -> None:
    assert device_slug("NVIDIA H200") == "NVIDIA-H200"
    assert device_slug("NVIDIA A100-SXM4-80GB") == "NVIDIA-A100-SXM4-80GB"
    assert calibration_file("cpu").name == "cpu.json"
    assert calibration_file("NVIDIA H200").parent.name == "calibration"


def test_budget_zero_reads_the_cached_pairs_of_a_backbone_only(
    measured: list[CalibrationRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_measuring(monkeypatch)
    records = calibrate([TWIN], ["fft", "bitfit"], budget_s=0.0, **SMALL)
    assert records == [measured[1]]  # fft was cached; bitfit is left for a call with time


# --------------------------------------------------------------------------- the planner


def _cells(plan: dict) -> dict[tuple[str, str], dict]:
    return {(c["backbone"], c["strategy"]): c for c in plan["cells"] if c["regime"] == "full"}


def test_the_planner_projects_from_calibrations_and_a_family_median(tmp_path: Path) -> None:
    from progbench.sweep.cost import CostOptions
    from progbench.sweep.plan import make_plan
    from progbench.sweep.spec import load_sweep
    from tests.helpers.sweeps import write_sweep

    sweep = load_sweep(write_sweep(tmp_path))  # tiny-resnet, tiny-dinov2 x lp, bitfit, lora-r4
    table = {(TWIN, "bitfit"): (1e-3, 4e-3), (TWIN, "lp"): (1e-3, 1e-3)}
    once = make_plan(sweep, CostOptions(calibration=table)).to_json()
    twice = make_plan(
        sweep, CostOptions(calibration={k: (2 * a, 2 * b) for k, (a, b) in table.items()})
    ).to_json()
    one, two = _cells(once), _cells(twice)
    # lora-r4 was not calibrated: it takes the median of its family (peft) on the twin, bitfit's.
    assert one[(TWIN, "bitfit")]["basis"] == one[(TWIN, "lora-r4")]["basis"] == "calibrated"
    assert one[(TWIN, "lora-r4")]["device_hours"] == pytest.approx(
        one[(TWIN, "bitfit")]["device_hours"], rel=0.05
    )
    assert one[("tiny-dinov2", "bitfit")]["basis"] == "flops"  # nothing calibrated for it
    for key in [(TWIN, "bitfit"), (TWIN, "lora-r4")]:
        assert two[key]["device_hours"] == pytest.approx(2 * one[key]["device_hours"], rel=0.01)
    assert "calibration" in once["basis"] and "FLOP" in once["basis"]


def test_sweep_plan_calibrate_measures_once_then_reads_the_cache(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from progbench.cli import main
    from tests.helpers.sweeps import write_sweep

    path = write_sweep(tmp_path, backbones=[TWIN])

    def plan(*extra: str) -> dict:
        with pytest.raises(SystemExit) as exc:
            main(["sweep", "plan", str(path), "--json", *extra])
        assert exc.value.code in (0, None)
        return json.loads(capsys.readouterr().out)

    first = plan("--calibrate")
    assert {c["basis"] for c in _cells(first).values()} == {"calibrated", "cpu"}
    records = json.loads(calibration_file("cpu").read_text())["records"]
    assert {r["strategy"] for r in records.values()} == {"bitfit", "lora-r4", "lp"}
    assert plan("--calibrate", "--calibrate-budget", "0")["totals"] == first["totals"]
    assert plan()["basis"] != first["basis"]  # without --calibrate: the FLOP basis
