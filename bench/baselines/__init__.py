"""The comparison servers: the naive per-client XREAD gateway, arq's default-poll worker and the
in-memory SSE ceiling. Each runs as its own process (``python -m bench.baselines.<name>``)."""
