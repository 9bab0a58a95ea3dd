"""HTTP handlers, one module per store; each exposes `routes`."""
