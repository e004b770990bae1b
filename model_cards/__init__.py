"""Model card templates, filled in when a model is saved or pushed (see hubformers.scripts.model_card)."""
