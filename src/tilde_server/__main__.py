"""`python -m tilde_server` runs the same click CLI as the `tilde-server` script."""

from tilde_server.cli import main

if __name__ == "__main__":
    main()
