"""``python -m tilde_mount``: the same command as ``tilde-mount`` (the background mount
re-executes itself this way, so it does not depend on the console script being on PATH)."""

from .cli import main

if __name__ == "__main__":
    main()
