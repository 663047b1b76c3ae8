"""What an operator runs the registry with: health probes, Prometheus metrics, structured
access logs and a graceful stop. Nothing here decides access or touches images."""
