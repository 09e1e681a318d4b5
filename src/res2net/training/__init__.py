"""Training, evaluation, distillation, checkpoints and distributed helpers (``res2net train`` / ``res2net eval``)."""
