"""Custom TFX components: each a component.py (spec) and an executor.py (the work)."""
