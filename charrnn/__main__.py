"""`python -m charrnn` is the `charrnn` command (and what torchrun launches)."""

from charrnn.commands.cli import main

if __name__ == "__main__":
    main()
