"""``make bench``: the project against a naive baseline and an in-memory ceiling, in one run.

``bench.run`` orchestrates; ``bench.load`` (SSE clients) and ``bench.producer`` (paced appends)
are the separate load processes; ``bench.baselines`` holds the two comparison servers.
"""
