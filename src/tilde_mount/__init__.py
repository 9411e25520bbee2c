"""tilde-mount: a Tilde repository session as a local directory (FUSE).

The command line lives in ``tilde_mount.cli``; the daemon's composition root in
``tilde_mount.daemon``. Nothing outside this package imports it.
"""

__version__ = "0.1.0"
