"""What Bifrost's tests and benchmarks both start: real NATS, PostgreSQL and S3 servers, an emulated Kubernetes
API server, and a stand-in for the control plane's runner API. Part of the development workspace only: no
released package depends on it."""
