"""Focus maps: surface fitting, maps built by autofocus on the simulated XY stage, the
plate benchmark, the example, the HTTP endpoints (real uvicorn) and the MDA engine."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from autofocus_drivers.errors import ConfigurationError
from autofocus_drivers.sim import FaultConfig, SampleSurface, SimConfig, SimulatedMicroscope

from autofocus.search.focus import FocusRequest
from autofocus.search.maps import (
    FocusMap,
    MapPoint,
    SurfaceFitError,
    build_focus_map,
    fit_surface,
    grid_positions,
    spread_positions,
)

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- surfaces
def _grid_xy(n: int = 6, span: float = 50_000.0):
    g = np.linspace(0, span, n)
    x, y = np.meshgrid(g, g)
    return x.ravel(), y.ravel()


def test_plane_is_recovered_exactly_and_chosen_for_planar_data():
    x, y = _grid_xy()
    z = 3.0 + 2e-4 * x - 1e-4 * y
    report = fit_surface(x, y, z)
    assert report.surface.kind == "plane"
    assert report.surface.predict_um(12_345.0, 6_789.0) == pytest.approx(
        3.0 + 2e-4 * 12_345.0 - 1e-4 * 6_789.0, abs=1e-9
    )
    assert report.used.all()


def test_bowed_data_picks_a_curved_model_by_leave_one_out_residual():
    rng = np.random.default_rng(0)
    x, y = _grid_xy()
    z = 1e-4 * x + 8.0 * ((x - 25_000) ** 2 + (y - 25_000) ** 2) / 25_000**2
    z = z + rng.normal(0, 0.05, z.size)
    report = fit_surface(x, y, z)
    assert report.surface.kind in ("quadratic", "thin-plate")
    assert report.candidates["plane"] > 5 * report.candidates[report.surface.kind]
    assert report.surface.loo_rms_um < 0.1


def test_outlier_is_flagged_and_left_out():
    rng = np.random.default_rng(1)
    x, y = _grid_xy()
    z = 2e-4 * x + rng.normal(0, 0.05, x.size)
    z[7] += 12.0  # the autofocus locked onto dust 12 µm above the specimen
    report = fit_surface(x, y, z)
    assert not report.used[7] and report.used.sum() == x.size - 1
    assert report.residuals_um[7] == pytest.approx(12.0, abs=0.3)
    assert report.surface.predict_um(x[7], y[7]) == pytest.approx(2e-4 * x[7], abs=0.1)


@pytest.mark.parametrize(
    ("x", "y", "z", "message"),
    [
        ([0, 1], [0, 1], [0, 1], "at least 3 points"),
        ([0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3], "collinear"),
        ([0, 1, np.nan], [0, 1, 0], [0, 1, 2], "finite"),
    ],
)
def test_unusable_points_are_refused(x, y, z, message):
    with pytest.raises(SurfaceFitError, match=message):
        fit_surface(x, y, z)


def test_focus_map_ignores_failed_points_and_reports_them():
    pts = [MapPoint(0, 0, 1.0), MapPoint(1000, 0, 2.0), MapPoint(0, 1000, 3.0),
           MapPoint(1000, 1000, None, success=False, reason="no focus signal")]
    fmap = FocusMap(pts)
    assert fmap.ready
    assert fmap.predict_z_um(1000, 1000) == pytest.approx(4.0)
    d = fmap.to_dict()
    assert (d["n_points"], d["n_used"], d["n_failed"]) == (4, 3, 1)
    assert d["points"][3]["reason"] == "no focus signal" and not d["points"][3]["used"]
    json.dumps(d)  # JSON-ready (no NaN)
    with pytest.raises(SurfaceFitError, match="cannot predict"):
        FocusMap([MapPoint(0, 0, 1.0)]).predict_z_um(0, 0)


def test_grid_and_spread_positions():
    g = grid_positions((0, 10), (0, 20), 3, 2)
    assert g == [(0, 0), (5, 0), (10, 0), (10, 20), (5, 20), (0, 20)]
    cands = [(x, y) for x in range(10) for y in range(10)]
    chosen = spread_positions(cands, 4)
    assert {cands[i] for i in chosen} == {(0, 0), (9, 9), (0, 9), (9, 0)}


# ----------------------------------------------------------- built on the simulator
def _plate_scope(seed=0, **config_changes):
    config = SimConfig.preset(
        "beads", focus_z_um=0.0, surface=SampleSurface.plate(tilt_um=20.0, bow_um=8.0),
        noise_model="gaussian", width_px=128, height_px=128,
    )
    return SimulatedMicroscope(dataclasses.replace(config, **config_changes), seed=seed)


def test_map_built_by_autofocus_predicts_within_dof_4():
    mic = _plate_scope()
    samples = grid_positions((5_000, 103_000), (5_000, 67_000), 4, 3)
    fmap = build_focus_map(mic, samples, FocusRequest(range_um=60, tolerance_um=0.25),
                           range_after_map_um=20)
    assert fmap.ready and sum(p.used for p in fmap.points) == 12
    rng = np.random.default_rng(3)
    errors = []
    for x, y in zip(rng.uniform(5_000, 103_000, 30), rng.uniform(5_000, 67_000, 30),
                    strict=True):
        # The map holds commanded z (approached from below); the stage's play puts the
        # carriage half the backlash below it, as after the autofocus itself.
        half_play = mic.config.stage.backlash_um / 2
        predicted_physical = fmap.predict_z_um(x, y) - half_play
        errors.append(abs(predicted_physical - mic.true_focus_z_um(xy_um=(x, y))))
    assert np.percentile(errors, 90) <= mic.optics.depth_of_field_um / 4


def test_points_after_the_map_predicts_search_with_the_prediction_as_prior():
    # Issue 22: once three points fit a surface, the next ones start at its prediction.
    mic = _plate_scope()
    samples = grid_positions((5_000, 103_000), (5_000, 67_000), 4, 3)
    paths: list[str | None] = []
    fmap = build_focus_map(mic, samples, FocusRequest(range_um=60, tolerance_um=0.25),
                           on_point=lambda p, r: paths.append(r.details.get("path")))
    assert fmap.ready and sum(p.used for p in fmap.points) == 12
    assert "prior" not in paths[:3] and paths[3:].count("prior") >= 6, paths
    blind = [p.frames for p in fmap.points[:3]]
    with_prior = [p.frames for p, path in zip(fmap.points, paths, strict=True) if path == "prior"]
    assert max(with_prior) < min(blind)


def test_a_failed_autofocus_is_recorded_but_not_a_map_point():
    mic = _plate_scope(faults=FaultConfig(camera_error=frozenset({45})))
    samples = grid_positions((5_000, 103_000), (5_000, 67_000), 3, 2)
    fmap = build_focus_map(mic, samples, FocusRequest(range_um=60, tolerance_um=0.25))
    failed = [p for p in fmap.points if not p.success]
    assert len(failed) == 1 and failed[0].z_um is None and not failed[0].used
    assert "camera" in failed[0].reason.lower()
    assert fmap.ready and sum(p.used for p in fmap.points) == 5


def test_map_needs_an_xy_stage():
    from autofocus_drivers.base import ZLimits

    with pytest.raises(ConfigurationError, match="no XY stage"):
        build_focus_map(ZLimits(0, 1), [(0.0, 0.0)])  # type: ignore[arg-type]


# -------------------------------------------------------------------- bench, example
def test_plate_benchmark_meets_the_issue_goals():
    from autofocus.bench.focus_map import run_focus_map_bench

    report = run_focus_map_bench(samples=24, every_field_sample=24)
    assert report["n_fields"] == 96 * 9
    assert report["fraction_autofocused"] <= 0.20
    assert report["p90_error_dof"] <= 0.25
    assert report["hardware_s"] < report["hardware_s_every_field"]
    assert report["every_field_success"] == 1.0


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)


def test_bench_focus_map_cli_json():
    proc = _run("-m", "autofocus", "bench", "focus-map", "--json", "--samples", "16",
                "--every-field-sample", "16")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for key in ("fraction_autofocused", "p90_error_dof", "hardware_s", "hardware_s_every_field"):
        assert isinstance(report[key], float), key
    assert report["n_autofocused"] == 16


def test_focus_map_example_json():
    proc = _run(str(ROOT / "examples" / "focus_map.py"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["residuals_um"]) == 12 and len(report["checks"]) == 60
    assert all(abs(r) < 1.0 for r in report["residuals_um"])
    dof = report["dof_um"]
    assert all(abs(c["error_um"]) <= dof / 4 for c in report["checks"])


# ------------------------------------------------------------------------------ HTTP
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from sim_server import sim_server

    sim = {"surface_tilt_um": 20.0, "surface_bow_um": 8.0, "focus_z_um": 0.0,
           "noise_model": "gaussian"}
    with sim_server(tmp_path_factory.mktemp("maps") / "jobs.db", sim=sim) as srv:
        yield srv


@pytest.fixture()
def af(server):
    from autofocus.client import AutofocusClient

    with AutofocusClient(server.url, timeout_s=60) as client:
        yield client


def test_http_map_from_a_grid_predicts_the_plate(server, af):
    grid = {"x_min_um": 10_000, "x_max_um": 110_000, "y_min_um": 10_000, "y_max_um": 75_000,
            "nx": 4, "ny": 3}
    m = af.focus_map(grid=grid, range_um=60, range_after_map_um=20, tolerance_um=0.25)
    assert m["state"] == "ready", m
    assert m["n_used"] >= 11 and m["surface"]["kind"] in ("quadratic", "thin-plate")
    assert af.get_focus_map(m["id"])["id"] == m["id"]
    mic = server.manager.microscope
    half_play = mic.config.stage.backlash_um / 2
    for x, y in [(30_000.0, 40_000.0), (90_000.0, 20_000.0), (60_000.0, 60_000.0)]:
        z = af.focus_map_z(m["id"], x, y)
        assert abs(z - half_play - mic.true_focus_z_um(xy_um=(x, y))) <= (
            mic.optics.depth_of_field_um / 4
        )


def test_http_map_from_points_and_errors(af):
    from autofocus.client import ApiError

    m = af.focus_map(points=[(0, 0, 1.0), (1000, 0, 2.0), (0, 1000, 3.0)])
    assert m["state"] == "ready"
    assert af.focus_map_z(m["id"], 1000, 1000) == pytest.approx(4.0)
    with pytest.raises(ApiError) as err:
        af.focus_map_z("nope", 0, 0)
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        af.focus_map(points=[(0, 0, 1.0), (1, 1, 2.0), (2, 2, 3.0)])  # collinear
    assert err.value.status == 422 and "collinear" in err.value.detail
    with pytest.raises(ApiError) as err:
        af.focus_map(points=[(0, 0, 1.0)] * 3, positions=[(0.0, 0.0)])
    assert err.value.status == 422
    # The same checks as a job (the tolerance floor used to be skipped for maps).
    for bad, word in (({"scorer": "nope"}, "nope"), ({"strategy": "nope"}, "nope"),
                      ({"range_um": 500.0}, "limits"), ({"tolerance_um": 1e-8}, "tolerance")):
        with pytest.raises(ApiError) as err:
            af.focus_map(positions=[(0.0, 0.0)] * 3, **bad)
        assert err.value.status == 422 and word in err.value.detail


def test_http_map_not_ready_is_409(server, af):
    m = af.focus_map(positions=[(10_000.0, 10_000.0), (20_000.0, 10_000.0)], wait=True)
    assert m["state"] == "failed" and "at least 3" in m["error"]
    from autofocus.client import ApiError

    with pytest.raises(ApiError) as err:
        af.focus_map_z(m["id"], 0, 0)
    assert err.value.status == 409


# ------------------------------------------------------------------- MDA engine + map
def test_mda_engine_places_positions_from_the_map_and_refreshes_it():
    pytest.importorskip("pymmcore_plus")
    import useq
    from autofocus_drivers.mm_sim_devices import simulated_unicore
    from pymmcore_plus.mda import MDARunner

    from autofocus.acquire.mda import AutofocusEngine

    config = SimConfig.preset("beads", focus_z_um=0.0,
                              surface=SampleSurface.plate(tilt_um=20.0, bow_um=8.0))
    core, sim = simulated_unicore(config, seed=2)
    request = FocusRequest(range_um=60, tolerance_um=0.25)
    sim.set_light(True)  # the map is built on the simulator itself, not through the core's
    fmap = build_focus_map(sim, grid_positions((5_000, 103_000), (5_000, 67_000), 3, 3),
                           request, range_after_map_um=20)
    sim.set_light(False)  # ... shutter, which the acquisition's auto-shutter drives
    assert fmap.ready
    engine = AutofocusEngine(core, z_limits_um=sim.z_limits_um, request=request,
                             focus_map=fmap, map_refresh_positions=3)
    runner = MDARunner()
    runner.set_engine(engine)
    seen = []
    runner.events.frameReady.connect(
        lambda img, ev, meta: seen.append((meta["autofocus"], sim.physical_z_um,
                                           sim.true_focus_z_um()))
    )
    rng = np.random.default_rng(5)
    xs, ys = rng.uniform(8_000, 100_000, 8), rng.uniform(8_000, 64_000, 8)
    seq = useq.MDASequence(  # no autofocus plan: z from the map, z=0 in the sequence ignored
        stage_positions=[useq.Position(x=x, y=y, z=0.0) for x, y in zip(xs, ys, strict=True)]
    )
    n_before = len(fmap.points)
    runner.run(seq)
    assert len(seen) == 8
    sources = [meta["source"] for meta, *_ in seen]
    assert sources.count("map") >= 5 and "autofocus" in sources  # refreshed every 3 positions
    assert len(fmap.points) > n_before  # refresh autofocus results joined the map
    dof = sim.optics.depth_of_field_um
    for _meta, physical, true_z in seen:
        assert abs(physical - true_z) <= dof / 4


def test_http_focus_map_example_json():
    proc = _run(str(ROOT / "examples" / "http_focus_map.py"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["focus"]["state"] == "succeeded"
    assert report["focus_map"]["state"] == "ready" and len(report["predictions"]) == 96
    assert all(abs(p["error_um"]) <= report["dof_um"] / 4 for p in report["predictions"])


def test_mda_engine_refreshes_a_stale_map_by_time():
    """map_refresh_s: a map older than T seconds is refreshed by an autofocus there."""
    pytest.importorskip("pymmcore_plus")
    import useq
    from autofocus_drivers.mm_sim_devices import simulated_unicore
    from pymmcore_plus.mda import MDARunner

    from autofocus.acquire.mda import AutofocusEngine

    config = SimConfig.preset("beads", focus_z_um=0.0, surface=SampleSurface.plate())
    core, sim = simulated_unicore(config, seed=4)
    fmap = FocusMap.from_points([(0, 0, 0.0), (100_000, 0, 0.0), (0, 70_000, 0.0)])
    engine = AutofocusEngine(core, z_limits_um=sim.z_limits_um, focus_map=fmap,
                             request=FocusRequest(range_um=60, tolerance_um=0.25),
                             map_refresh_s=1e-6)
    runner = MDARunner()
    runner.set_engine(engine)
    runner.run(useq.MDASequence(stage_positions=[(20_000, 20_000, 0.0), (60_000, 30_000, 0.0)]))
    assert [r.source for r in engine.focus_log] == ["map", "autofocus", "map", "autofocus"]
    assert len(fmap.points) == 5 and all(p.success for p in fmap.points)


def test_only_unambiguous_successes_are_map_points():
    from autofocus.search.maps import map_point_verdict
    from autofocus.search.result import FocusResult, Timing

    def result(success=True, reason=None, **details):
        return FocusResult(
            success=success, best_z_um=1.0 if success else None, best_score=1.0,
            confidence=0.9, reason=reason, error_type=None, start_z_um=0.0, final_z_um=1.0,
            frames=20, curve=[], timing=Timing(), strategy="s", scorer="t", details=details,
        )

    assert map_point_verdict(result()) is None
    assert map_point_verdict(result(False, "no focus signal")) == "no focus signal"
    verdict = map_point_verdict(result(rivals=[{"z_um": 1.0}, {"z_um": 16.5}]))
    assert verdict is not None and "rival" in verdict and "16.50" in verdict


def test_maps_survive_a_restart_and_a_build_cut_short_reads_failed(tmp_path):
    """Real SQLite file: a ready map answers again after a restart (refitted from its
    stored points); one that was being built when the service stopped reads failed."""
    from autofocus.service.focus_maps import INTERRUPTED, FocusMapRegistry, MapRecord

    db = tmp_path / "jobs.db"
    first = FocusMapRegistry(db)
    ready = first.from_points([(0, 0, 1.0), (1000, 0, 2.0), (0, 1000, 3.0), (1000, 1000, 4.2)],
                              "auto")
    building = MapRecord("b" * 32, "building", "autofocus", 1.0, FocusMap())
    building.focus_map.add(MapPoint(0, 0, 5.0))
    first._add(building)
    first.close()

    second = FocusMapRegistry(db)
    again = second.get(ready.id)
    assert again is not None and again.state == "ready"
    assert again.focus_map.predict_z_um(500, 500) == pytest.approx(
        ready.focus_map.predict_z_um(500, 500)
    )
    cut = second.get("b" * 32)
    assert cut.state == "failed" and cut.error == INTERRUPTED
    assert len(cut.focus_map.points) == 1
    second.close()
    assert FocusMapRegistry(db).get("b" * 32).error == INTERRUPTED
