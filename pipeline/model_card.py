"""The model card renderer lives with the report component (components must not import pipeline/);
re-exported here for the CLI's model card in the pipeline root."""
from deepattraction.components.report.model_card import MODEL_CARD_FILE, render, write  # noqa: F401
