"""Inference: answering (passage, type) questions with a model, and prediction runs."""
