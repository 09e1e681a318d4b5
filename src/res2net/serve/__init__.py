"""The inference server behind ``res2net serve`` (see docs/serving.md).

Modules: ``config`` (settings), ``model`` (the Predictor as the server uses it), ``batching``
(dynamic batching + admission control), ``service`` (everything protocol-independent), ``oip``
(Open Inference Protocol messages), ``app`` (REST, PaddleServing route, metrics, demo),
``grpc_service`` (gRPC), ``server`` (process lifecycle, signals, workers), ``cli``.
Nothing heavy is imported here, so ``res2net --help`` stays fast.
"""
