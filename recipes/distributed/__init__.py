"""Model parallelism: DeepSpeed pipeline stages, and pipeline x data replicas (hybrid)."""
