"""One log format for every process of the stack."""

import logging

FORMAT = "%(asctime)s - %(levelname)s - %(message)s"


def setup(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)
