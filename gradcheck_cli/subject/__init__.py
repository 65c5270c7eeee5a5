"""What is checked: the model and its inputs (docs/architecture.md says which module does what)."""
