"""Model-backed stages; torch and transformers are imported inside the functions that need them."""
