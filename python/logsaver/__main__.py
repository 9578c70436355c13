"""`python -m logsaver migrate SRC DST`: see logsaver.migrate."""

import sys

from logsaver.migrate import main

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "migrate":
        raise SystemExit("usage: python -m logsaver migrate SOURCE TARGET [--thread ID ...]")
    raise SystemExit(main(sys.argv[2:]))
