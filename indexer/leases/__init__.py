"""Leases: which writer may change a document now, when runs, services and jobs share one collection.

Qdrant has no compare-and-swap: a writer that takes a document by overwriting a shared point races every
other writer doing the same. So a claim is a point of its own (``kind = "lease"``, one per claim, written
only by its holder), and it is confirmed by reading back every lease of the document:

1. ``Leases.claim``: write my lease (document, the version I am about to write, my run, my process, an
   expiry), wait ``claim_margin_seconds``, then read the document's leases and record. I hold the document
   if my lease is there and no other lease is live; otherwise I delete mine and wait or report it busy.
   Two claimers never both hold it: each writes before it reads, so whichever reads last sees the other's
   lease (on a store where an acknowledged write is visible to every later read: one Qdrant node, the
   embedded engines; on a replicated collection the margin has to cover the replication delay).
2. While a run holds documents, a timer thread renews their leases every ``lease_seconds / 5``: renewal
   never waits for the model, which may spend minutes on one batch. The holder trusts a lease for
   ``lease_seconds / 2`` after its last renewal was sent; every write of the document passes ``fence`` (and
   every delete ``check``), which refuses it after that. A claim that lapsed is lost for good, and the run
   tries the document again later under a new claim.
3. ``release``: once the document's last write is out, its lease and the dead leases it took over are deleted.

Who is live: a lease whose expiry (by its holder's clock) has passed by the judge's clock is dead; so is one
given up (expiry 0: a run that stopped on an error, or Ctrl-C). A lease of this very process is live only
while a run here holds it. On an embedded store (Edge, local mode: one process at a time, by a folder lock)
a lease of any other process is dead, since that process is gone. The same run (``run_id``) from another
process, e.g. a retried Ray task, takes over its own earlier lease when it claims the document again.

Timings, with L = ``lease_seconds`` (600 s by default): renewal every L/5; writes only within L/2 of the
last renewal. A holder's writes are therefore never judged expired while clock skew plus one request's
duration stays under L/2. A writer killed on a server leaves leases that the next run repairs once they
expire: at worst L after its last renewal, plus the repairing machine's clock skew.

Use, as the pipeline does (and a Ray worker, a partition job or a service would, each with its own
``Leases`` and, for parts of one run, one ``run_id``)::

    with Leases(store, Owner.new("partition 2/8", run_id=run_id), LeaseTimings.from_settings(s.ingest)) as leases:
        writer = Writer(store, fence=leases.fence)
        versions.recover(store, leases, writer)           # documents whose writers are gone
        claim = leases.claim(doc_id, content_hash)        # DocumentBusy: another live writer has it
        if claim.record and claim.record.is_complete(content_hash):
            versions.refresh(writer, leases, [(claim, None)])   # written meanwhile: just release
        else:
            ...  # writer.add(chunk points of that version)
            versions.complete(writer, leases, claim, record)    # or versions.abandon(writer, leases, claim)
        # LeaseLost from complete: the claim lapsed; claim the document again later

``store`` must be safe to call from the renewal thread too (``indexer.store.SerializedStore``).
"""

from indexer.leases.holder import Leases
from indexer.leases.records import (
    GIVEN_UP,
    Claim,
    DocumentState,
    LeaseRecord,
    LeaseTimings,
    Owner,
    lease_point_id,
    process_id,
)

__all__ = [
    "GIVEN_UP",
    "Claim",
    "DocumentState",
    "LeaseRecord",
    "LeaseTimings",
    "Leases",
    "Owner",
    "lease_point_id",
    "process_id",
]
