"""The commands of `dbtwf`, one module per family; ``provision.cli`` registers them.

``shell`` is what every command shares (the global options, the error edge, loading the
environment, connecting, asking). A command reads its options, calls one use case
(``provision.flows``, ``provision.onboard``, ``provision.add_task``, ...) and hands the result
to ``provision.output``; it never holds the logic itself. Keep module-level imports light:
`dbtwf --help` must never import `databricks.sdk` (about 2 s), so each command imports its
logic inside its body.
"""
