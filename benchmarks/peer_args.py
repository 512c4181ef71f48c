"""The command line shared by the scripts benchmarks/amx.py runs in other venvs (they import nothing of ours but
this file, which sits beside them on sys.path)."""

from __future__ import annotations

import argparse


def peer_parser(description: str, source_help: str) -> argparse.ArgumentParser:
    """SOURCE TEXTS.json OUT.npz [--repeats] [--threads] [--batch-size]."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("source", help=source_help)
    parser.add_argument("texts", help="a JSON list of the texts to embed")
    parser.add_argument("out", help="the .npz to write the embeddings to, one array per variant")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    return parser
