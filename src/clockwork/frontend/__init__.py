"""The front door: the Open Inference Protocol (KServe v2, with Triton's extensions) over HTTP and
gRPC on top of the controller, and the Prometheus metrics."""
