"""Items uploaded as a file: an arena CSV (gzipped or not) in the multipart form field ``file``,
read off the event loop and bounded after decompression.

The request body is already bounded (:class:`~crowdtune.server.limits.BodySizeLimit`), but a
gzip file of 39 kB can hold 40 MB of text. So the upload is decompressed in chunks into a
temporary file, counting as it goes, and refused with 413 as soon as it passes the limit
(``max_decompressed_bytes`` of :func:`~crowdtune.server.create_app`, by default the body
limit): nothing larger is ever held, nothing is stored. Decompressing and parsing run on a
worker thread (:func:`csv_items`), so a large import never stalls other requests.
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
from crowdtune.server.services import import_row, unprocessable

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


def upload_items(form: FormData, *, gold: bool, limit: int) -> list[dict[str, Any]]:
    """The items of the arena CSV in the form's field ``file`` (gzipped or not), each row
    checked like an item of a JSON import and its winner the gold answer when ``gold``
    (:func:`~crowdtune.server.services.import_row`); 413 past ``limit`` bytes decompressed, 422
    naming the data row and column of a malformed file. Blocking: call it off the event loop."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise unprocessable("multipart upload needs the arena CSV in the field 'file'")
    name = Path(upload.filename or "upload.csv").name
    upload.file.seek(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.csv"
        with path.open("wb") as target:
            copy_upload(upload.file, target, name=name, limit=limit)
        try:
            comparisons = read_arena_csv(path)
        except DatasetFormatError as exc:
            where = (f", data row {exc.row}" if exc.row is not None else "") + (
                f", column {exc.column!r}" if exc.column else ""
            )
            raise unprocessable(f"{name}{where}: {exc.problem}") from None
    return [import_row(name, row, c, gold) for row, c in enumerate(comparisons, start=1)]


async def csv_items(request: Request, gold: bool) -> list[dict[str, Any]]:
    """:func:`upload_items` of the request's multipart form, on a worker thread."""
    form = await request.form()
    return await run_in_threadpool(upload_items, form, gold=gold, limit=upload_limit(request))
