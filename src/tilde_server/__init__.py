"""tilde_server: the embedded Tilde server (SQLite metadata + content-addressed blobs)."""

__version__ = "0.1.0"
