"""How the Predictor chooses its engine: a named one, or the fastest on this machine whose accuracy check passes."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from res2net.accuracy import AccuracyReport
from res2net.errors import Res2NetError
from res2net.runtime import BuildContext, Engine, EngineError, auto_candidates, create_engine

log = logging.getLogger("res2net.predict")


def select_engine(
    engine: str,
    precision: str | None,
    ctx: BuildContext,
    check: bool,
    check_engine: Callable[..., AccuracyReport],  # (engine, inputs=None) -> report
    check_inputs: Callable[[], np.ndarray],
) -> tuple[Engine, AccuracyReport | None]:
    """The engine to run and its accuracy report (``None`` with ``check=False``).

    A named engine is built and its check logged (a failed check warns: the user chose it);
    ``"auto"`` tries :func:`res2net.runtime.auto_candidates` fastest first and keeps the first that
    builds and passes ``check_engine``.
    """
    device = ctx.device
    accuracy: AccuracyReport | None = None
    if engine != "auto":
        built = create_engine(engine, precision or "fp32", ctx)
        if check:
            accuracy = check_engine(built)
            level = logging.INFO if accuracy.passed else logging.WARNING
            log.log(level, "%s: %s", built.describe(), accuracy.summary())
        return built, accuracy
    if not check and precision not in (None, "fp32"):
        raise EngineError(
            f"engine='auto' uses {precision} only after its accuracy check: drop check=False "
            "(--no-check) or name the engine explicitly"
        )
    candidates = auto_candidates(device, precision)
    if not check:
        candidates = [c for c in candidates if c[1] == "fp32"]
    if not candidates:
        raise EngineError(f"no engine can run {precision or 'any precision'} on {device} here")
    inputs = check_inputs() if check else None
    skipped = []
    for name, prec in candidates:
        try:
            built = create_engine(name, prec, ctx)
        except Res2NetError as e:
            skipped.append(f"{name} {prec}: {e}")
            continue
        except Exception as e:  # an exporter or runtime failing on this machine: try the next one
            log.debug("auto: %s %s failed to build", name, prec, exc_info=True)
            skipped.append(f"{name} {prec}: build failed ({type(e).__name__}: {e})")
            continue
        if check:
            report = check_engine(built, inputs)
            if not report.passed:
                skipped.append(f"{name} {prec}: {report.reason}")
                continue
            accuracy = report
        for s in skipped:
            log.info("auto: skipped %s", s)
        log.info(
            "auto: using %s%s",
            built.describe(),
            f"; {accuracy.summary()}" if accuracy else " (accuracy check off)",
        )
        return built, accuracy
    raise EngineError("no engine passed its accuracy check: " + "; ".join(skipped))
