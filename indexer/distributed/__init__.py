"""Ingestion past one process: ``--partition I/N`` shares for plain schedulers, and ``--ray`` on Ray Data.

- ``partition``: which documents a process of N takes (a pure function of the doc id).
- ``work``: the steps a distributed run splits between machines, without Ray: what the driver decides per
  file, parsing and chunking, encoding, and committing documents under their leases (``commit``).
- ``ray_run``: ``ingest_on_ray``, the driver of a Ray Data run (``import ray`` happens there, lazily).
"""

from indexer.distributed.partition import Partition, parse_partition, share_of

__all__ = ["Partition", "parse_partition", "share_of"]
