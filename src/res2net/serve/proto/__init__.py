"""The Open Inference Protocol v2 gRPC definition and its generated (committed) Python stubs."""
