"""Autofocus and focus maps over HTTP, the way any acquisition program can use them.

    python examples/http_focus_map.py            # summary
    python examples/http_focus_map.py --json     # every call's answer
    python examples/http_focus_map.py --url http://127.0.0.1:8765   # your running daemon

Without `--url` the daemon runs in this process (uvicorn on 127.0.0.1) on the simulated
microscope, its sample tilted and bowed across a 96-well plate footprint, so the
predictions can be checked against the simulator's true focus. The calls:

1. `POST /v1/focus?wait=60`: one autofocus where the stage is;
2. `POST /v1/focus-maps?wait=600` with a 4 × 3 `grid`: the daemon moves its XY stage to
   each grid point and autofocuses there (between other jobs), then fits the surface;
3. `GET /v1/focus-maps/{id}/z?x_um=&y_um=` at the centre field of every well: the z an
   acquisition program moves to before imaging that field, without an autofocus.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog

from autofocus.client import AutofocusClient

WELL_CENTRES_UM = [
    (14_380.0 + 9_000.0 * c, 11_240.0 + 9_000.0 * r) for r in range(8) for c in range(12)
]


def calls(af: AutofocusClient) -> dict[str, Any]:
    job = af.focus(range_um=60.0, tolerance_um=0.25)
    grid = {"x_min_um": 14_380.0, "x_max_um": 113_380.0, "y_min_um": 11_240.0,
            "y_max_um": 74_240.0, "nx": 4, "ny": 3}
    fmap = af.focus_map(grid=grid, range_um=60.0, range_after_map_um=20.0, tolerance_um=0.25)
    predictions = []
    if fmap["state"] == "ready":
        for x, y in WELL_CENTRES_UM:
            predictions.append({"x_um": x, "y_um": y, "z_um": af.focus_map_z(fmap["id"], x, y)})
    return {"focus": job.raw, "focus_map": fmap, "predictions": predictions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print every answer as JSON")
    parser.add_argument("--url", help="a running daemon (default: start one in-process)")
    parser.add_argument("--token", help="its API token, if it has one")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    if args.url:
        with AutofocusClient(args.url, token=args.token, timeout_s=60) as af:
            report = calls(af)
    else:
        from autofocus.service.api.server import BackgroundServer
        from autofocus.settings import load_settings

        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                None, database_path=Path(tmp) / "jobs.db",
                sim={"surface_tilt_um": 20.0, "surface_bow_um": 8.0, "focus_z_um": 0.0},
            )
            with BackgroundServer(settings) as server, AutofocusClient(server.url) as af:
                report = calls(af)
                mic = server.manager.microscope  # ground truth: the simulator itself
                half_play = mic.config.stage.backlash_um / 2  # map z is approached from below
                for p in report["predictions"]:
                    p["true_focus_z_um"] = mic.true_focus_z_um(xy_um=(p["x_um"], p["y_um"]))
                    p["error_um"] = p["z_um"] - half_play - p["true_focus_z_um"]
                report["dof_um"] = mic.optics.depth_of_field_um
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        m = report["focus_map"]
        print(f"focus: {report['focus']['state']} at z = "
              f"{(report['focus'].get('result') or {}).get('best_z_um')}")
        print(f"focus map {m['id']}: {m['state']}, surface {m.get('surface')}, "
              f"{m.get('n_used')} of {m.get('n_points')} points used")
        errors = [abs(p["error_um"]) for p in report["predictions"] if "error_um" in p]
        if errors:
            print(f"96 well centres predicted; max |error| {max(errors):.3f} µm "
                  f"(DOF/4 = {report['dof_um'] / 4:.3f} µm)")
    ok = report["focus_map"]["state"] == "ready"
    if "dof_um" in report:
        ok = ok and all(abs(p["error_um"]) <= report["dof_um"] / 4
                        for p in report["predictions"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
