"""Scale-out checks on one machine (issue 8): ``python -m deploy.scale`` / ``make scale-checks``.

Three checks, each on processes this package starts and tears down itself (never the shared services):

1. ``kafka``: a 3-node KRaft cluster (RF 3, min ISR 2) survives SIGKILL of a partition leader mid-stream; every
   acknowledged message of an idempotent ``acks=all`` producer is read back once, in order per key.
2. ``engine``: two ``manage.py run_engine`` processes split the command partitions; one is SIGKILLed mid-stream
   and a replacement takes its partitions over; the committed output equals an uncrashed in-process twin, with
   no duplicate fill id and an output for every command.
3. ``web``: two gunicorn processes behind a round-robin proxy (``deploy.scale.proxy``) serve one session.

Everything lives under ``.run/scale`` on its own ports (config.ScaleConfig).
"""
