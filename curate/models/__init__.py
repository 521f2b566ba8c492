"""Model-backed stages (SPEC §7); torch and transformers are imported inside the functions that need them."""
