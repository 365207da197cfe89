"""Supervised MAML: sinusoid regression (and few-shot classification)."""
