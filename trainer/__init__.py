"""Pure model code: features, preprocessing, model, training and export. Never imports pipeline/."""
