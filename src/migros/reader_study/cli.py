"""`migros-reader-study`: serve a pack, add readers, export the answers.

    migros-reader-study serve PACK [--db FILE] [--host 127.0.0.1] [--port 8000]
    migros-reader-study add-reader PACK READER [--db FILE] [--url http://HOST:PORT]
    migros-reader-study readers PACK [--db FILE] [--url ...]
    migros-reader-study export [PACK] [--db FILE] --out answers.csv

The database defaults to reader_studies/<dataset>-<pack id>.sqlite under the current folder (outside results/,
which the workflow rewrites).
"""

import argparse
import signal
import sys
from pathlib import Path

from migros.reader_study.pack_format import Pack, PackError
from migros.reader_study.server import StudyServer, is_loopback
from migros.reader_study.store import StoreError, StudyStore, default_database


def open_store(arguments) -> StudyStore:
    if arguments.pack is None:
        if arguments.db is None:
            raise StoreError("name the pack or the database (--db)")
        return StudyStore(arguments.db)
    pack = Pack.load(arguments.pack)
    return StudyStore(arguments.db or default_database(pack), pack)


def serve(arguments) -> None:
    pack = Pack.load(arguments.pack)
    store = StudyStore(arguments.db or default_database(pack), pack)
    server = StudyServer((arguments.host, arguments.port), pack, store)
    power = pack.study["power"]
    print(f"Reader study of {pack.study['dataset']} (pack {pack.pack_id}): {len(pack.study['items'])} pairs per "
          f"reader; answers in {store.path}")
    print(f"Power: {power['pairs_per_class']} pairs per class give {power['power_per_class']:.0%} power to detect a "
          f"{power['preference']:.0%} preference ({power['pairs_needed']} pairs reach {power['power_goal']:.0%})")
    if is_loopback(arguments.host):
        print(f"Readers open {server.url} and enter their reader id.")
    else:
        print("Open to the network: readers need their own link (migros-reader-study add-reader); the start "
              "page does not register readers.")
    print(f"Serving at {server.url}", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it like Ctrl-C
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()


def add_reader(arguments) -> None:
    store = open_store(arguments)
    token, new = store.add_reader(arguments.reader)
    print(f"{arguments.reader}{'' if new else ' (already added)'}: {arguments.url.rstrip('/')}/r/{token}/")
    store.close()


def list_readers(arguments) -> None:
    store = open_store(arguments)
    for reader, token in store.readers():
        progress = store.progress(reader)
        print(f"{reader}: {progress.answered} / {progress.total} answered, {arguments.url.rstrip('/')}/r/{token}/")
    store.close()


def export(arguments) -> None:
    store = open_store(arguments)
    count = store.export(arguments.out)
    print(f"{count} answers of pack {store.pack_id} ({store.dataset}) written to {arguments.out}")
    store.close()


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="migros-reader-study", description=__doc__.split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True)

    def command(name, function, help_text, pack_required=True):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("pack", type=Path, nargs=None if pack_required else "?",
                         help="the pack folder (results/<dataset>/reader_study/pack)")
        sub.add_argument("--db", type=Path,
                         help="the answer database (default reader_studies/<dataset>-<pack id>.sqlite)")
        sub.set_defaults(function=function)
        return sub

    serving = command("serve", serve, "start the study server")
    serving.add_argument("--host", default="127.0.0.1",
                         help="address to listen on; 0.0.0.0 opens it to the network, where readers need links")
    serving.add_argument("--port", type=int, default=8000)
    adding = command("add-reader", add_reader, "add a reader and print their personal link")
    adding.add_argument("reader", help="the reader's id: 1-40 letters, digits, '.', '_' or '-'")
    listing = command("readers", list_readers, "list the readers, their progress and links")
    for sub in (adding, listing):
        sub.add_argument("--url", default="http://127.0.0.1:8000", help="the server's address as readers reach it")
    exporting = command("export", export, "write every answer to a CSV file", pack_required=False)
    exporting.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    return main


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        arguments.function(arguments)
    except (PackError, StoreError) as error:
        print(f"migros-reader-study: {error}", file=sys.stderr)
        return 1
    return 0
