"""The stream worker: consume telemetry, score it, store the results, commit.

The worker is a set of parts with one job each (see ``docs/architecture.md``):

========================  ====================================================
module                    its one job
========================  ====================================================
``limits``                micro-batch sizes, windows and retry bounds; importable
                          without Faust (offline evaluation uses them)
``protocol``              the ONE delivery/commit protocol: its ordered steps,
                          written in one place, over sinks with one lifecycle
``sinks``                 the concrete sinks (InfluxDB points, dead letters,
                          alerts and incidents, line state, flush, commit)
``writes``                InfluxDB request bodies and bounded write retries
``state``                 line state: snapshot, the state topic's records,
                          restore on assignment in bounded time
``serving``               model serving: preload on assignment, hot reload and
                          shadows (followed from the models topic)
``feedback``              QA feedback consumer (a thread beside the scoring loop)
``kafka_internals``       the only module that touches Faust/aiokafka internals
``batching``              micro-batch splitting and stores kept in batch order
``stats``                 the worker's counters and its periodic report
``loop``                  the consume loop (take, admit, score, queue the store)
``app``                   wiring: the Faust app, topics, callbacks
``worker``                ``run_worker``, topic creation, credentials
========================  ====================================================

Importing this package loads nothing heavy; the pure calculation lives in
:mod:`lineguard.detectors`.
"""
