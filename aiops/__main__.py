"""``python -m aiops`` is the ``aiops`` command."""

from aiops.cli import main

if __name__ == "__main__":
    main(prog_name="aiops")
