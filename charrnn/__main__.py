"""`python -m charrnn` and the `charrnn` command (and what torchrun launches).

``run`` imports the CLI (and with it torch) itself, so that a Ctrl-C during those first seconds
is "interrupted" and exit status 130, as it is at any later moment, not a traceback.
"""

import sys


def run() -> None:
    try:
        from charrnn.commands.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
