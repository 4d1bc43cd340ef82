"""Items uploaded as a file in the multipart form field ``file`` (gzipped or not), read off the
event loop and bounded after decompression: an arena CSV for a pairwise project, a JSON Lines or
CSV file of ``prompt``, ``response`` and ``reference`` or ``gold`` for a revision or rating
project (:func:`crowdtune.datasets.items.read_items`).

The request body is already bounded (:class:`~crowdtune.server.limits.BodySizeLimit`), but a
gzip file of 39 kB can hold 40 MB of text. So the upload is decompressed in chunks into a
temporary file, counting as it goes, and refused with 413 as soon as it passes the limit
(``max_decompressed_bytes`` of :func:`~crowdtune.server.create_app`, by default the body
limit): nothing larger is ever held, nothing is stored. Decompressing and parsing run on a
worker thread (:func:`file_items`), so a large import never stalls other requests.
"""

from __future__ import annotations

import gzip
import tempfile
import zlib
from pathlib import Path
from typing import IO, Any

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from crowdtune.datasets.comparisons import read_arena_csv
from crowdtune.datasets.home import DatasetFormatError
from crowdtune.datasets.items import ITEM_FILE_SUFFIXES, read_items
from crowdtune.records import DEFAULT_SCALE
from crowdtune.server.schemas import ITEM_MODELS
from crowdtune.server.services import checked_item, import_row, unprocessable

#: Bytes read (and, for gzip, decompressed) at a time.
CHUNK_BYTES = 1 << 16


def upload_limit(request: Request) -> int:
    """The largest upload the app accepts once decompressed, in bytes."""
    return int(request.app.state.max_decompressed_bytes)


def copy_upload(source: IO[bytes], target: IO[bytes], *, name: str, limit: int) -> int:
    """Copy the upload ``source`` (named ``name``; gunzipped when it ends in ``.gz``) into
    ``target`` in chunks, and return the bytes written. 413 naming the limit once more than
    ``limit`` bytes come out; 422 when a ``.gz`` file is not valid gzip."""
    reader = gzip.GzipFile(fileobj=source, mode="rb") if name.endswith(".gz") else source
    written = 0
    while True:
        try:
            chunk = reader.read(CHUNK_BYTES)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise unprocessable(f"{name}: not a readable gzip file ({exc})") from None
        if not chunk:
            return written
        written += len(chunk)
        if written > limit:
            raise HTTPException(
                413,
                f"{name} is over the upload limit of {limit} bytes once decompressed; "
                "nothing was imported",
            )
        target.write(chunk)


def upload_items(
    form: FormData,
    *,
    gold: bool,
    limit: int,
    kind: str = "pairwise",
    scale: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """The items of the file in the form's field ``file`` (gzipped or not), each row checked
    like an item of a JSON import. For a pairwise project (``kind``) an arena CSV, its winner
    the gold answer when ``gold`` (:func:`~crowdtune.server.services.import_row`); for a
    revision or rating project a ``.jsonl`` or ``.csv`` file (each optionally ``.gz``) of
    ``prompt``, ``response``, optional ``id`` and ``reference`` (revision) or ``gold`` (rating,
    on ``scale``). 413 past ``limit`` bytes decompressed, 422 naming the file, data row and
    column of the first problem. Blocking: call it off the event loop."""
    upload = form.get("file")
    expected = "an arena CSV" if kind == "pairwise" else "a JSON Lines or CSV file of items"
    if not isinstance(upload, UploadFile):
        raise unprocessable(f"multipart upload needs {expected} in the field 'file'")
    name = Path(upload.filename or "upload.csv").name
    if kind != "pairwise" and not name.endswith(ITEM_FILE_SUFFIXES):
        raise unprocessable(
            f"{name}: cannot tell the format; the file name must end in "
            f"{', '.join(ITEM_FILE_SUFFIXES)}"
        )
    upload.file.seek(0)
    with tempfile.TemporaryDirectory() as folder:
        # Decompressed already: the copy's name keeps the format, not the .gz.
        jsonl = kind != "pairwise" and name.endswith((".jsonl", ".jsonl.gz"))
        path = Path(folder) / ("upload.jsonl" if jsonl else "upload.csv")
        with path.open("wb") as target:
            copy_upload(upload.file, target, name=name, limit=limit)
        try:
            if kind == "pairwise":
                comparisons = read_arena_csv(path, strict=True)  # texts checked at the edge
            else:
                rows = read_items(path, kind, scale=scale or DEFAULT_SCALE)  # type: ignore[arg-type]
        except DatasetFormatError as exc:
            where = (f", data row {exc.row}" if exc.row is not None else "") + (
                f", column {exc.column!r}" if exc.column else ""
            )
            raise unprocessable(f"{name}{where}: {exc.problem}") from None
    if kind == "pairwise":
        return [import_row(name, row, c, gold) for row, c in enumerate(comparisons, start=1)]
    context = {"scale": scale}
    return [
        checked_item(ITEM_MODELS[kind], fields, where=f"{name}, data row {row}", context=context)
        for row, fields in enumerate(rows, start=1)
    ]


async def file_items(
    request: Request, *, gold: bool, kind: str = "pairwise", scale: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """:func:`upload_items` of the request's multipart form, on a worker thread."""
    form = await request.form()
    return await run_in_threadpool(
        upload_items, form, gold=gold, limit=upload_limit(request), kind=kind, scale=scale
    )
