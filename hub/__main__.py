"""``python -m hub``: the same CLI as the ``hub`` command."""

from hub.cli import main

if __name__ == "__main__":
    main()
