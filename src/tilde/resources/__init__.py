"""Resource handles, one module per noun; ``tilde.models`` re-exports the public ones."""
