"""The foundation layer: what every other part of the product may import and which imports none
of them (docs/architecture.md): environment readers and the log context. The model-level
modules of each Django app (models, events, errors, the stage table) belong to this layer too,
though they live in their apps (Django keeps a model in its app's package)."""
