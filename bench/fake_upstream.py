"""The tests' loopback fake OpenAI server, in a process of its own for the benchmarks.

Prints its base URL on the first line, then serves until its standard input closes.
"""

from __future__ import annotations

import sys

from tests.fake_openai import FakeOpenAI


def main() -> None:
    server = FakeOpenAI().start()
    print(server.base_url, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
