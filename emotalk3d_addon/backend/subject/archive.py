"""Bundle zips: every entry checked before anything is extracted, extraction into the
cache, and the on-disk side of saving (what may be overwritten, the folder swap, the
deterministic zip)."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from ..errors import InputError
from ..io.digest import file_sha256
from .format import (MANIFEST, MAX_COMPRESSION_RATIO, MAX_ZIP_BYTES, MAX_ZIP_MEMBERS, RATIO_FLOOR_BYTES,
                     _EXTRACTED_MARKER, _first_line, _short, _unsafe_relative, _within)


# --------------------------------------------------------------------------- zips


def _zip_defects(infos: list[zipfile.ZipInfo]) -> tuple[list[str], list[tuple[zipfile.ZipInfo, tuple[str, ...]]]]:
    """Every unsafe entry of a zip, and the (entry, path parts) to extract when none."""
    defects: list[str] = []
    if len(infos) > MAX_ZIP_MEMBERS:
        defects.append(f"the zip holds {len(infos)} entries; at most {MAX_ZIP_MEMBERS} are allowed")
    total = sum(max(0, i.file_size) for i in infos)
    if total > MAX_ZIP_BYTES:
        defects.append(f"the zip unpacks to {total} bytes; at most {MAX_ZIP_BYTES} (2 GiB) are allowed")
    seen: dict[str, str] = {}
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    plan = []
    for info in infos:
        name = info.filename
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            defects.append(f"zip entry {name!r}: symbolic link (not allowed in a bundle)")
            continue
        why = _unsafe_relative(name)
        if why is None and any(ord(c) < 32 for c in name):
            why = "contains a control character"
        if why is not None:
            defects.append(f"zip entry {_short(name)}: path {why}")
            continue
        if info.flag_bits & 0x1:
            defects.append(f"zip entry {name!r}: encrypted (not supported)")
            continue
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            defects.append(f"zip entry {name!r}: unpacks to {info.file_size} bytes from {info.compress_size} "
                           f"(more than {MAX_COMPRESSION_RATIO} times; a zip bomb?)")
            continue
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if not parts:
            continue
        folded = "/".join(parts).casefold()
        if folded in seen:
            defects.append(f"zip entry {name!r}: duplicate name (also {seen[folded]!r})")
            continue
        seen[folded] = name
        if info.is_dir():
            dirs.add(parts)
        else:
            files.add(parts)
        dirs.update(parts[:i] for i in range(1, len(parts)))
        plan.append((info, parts))
    for clash in sorted(files & dirs):
        defects.append(f"zip entry {'/'.join(clash)!r}: is both a file and a folder")
    return defects, plan



def _extract_zip(path: Path, cache_dir: Path) -> tuple[list[str], Path | None]:
    """Check a zip's entries, extract it into ``cache_dir/subjects/<hash>/`` (reusing a
    complete earlier extraction) and return the bundle folder inside it."""
    try:
        digest = file_sha256(path)[:16]
        final = cache_dir / "subjects" / digest
        if not (final / _EXTRACTED_MARKER).is_file():
            with zipfile.ZipFile(path) as zf:
                defects, plan = _zip_defects(zf.infolist())
                if defects:
                    return [f"{path.name}: {d}" for d in defects], None
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():  # an incomplete extraction (no marker): start again
                    shutil.rmtree(final)
                tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.tmp-", dir=final.parent))
                try:
                    _extract_plan(zf, plan, tmp)
                    (tmp / _EXTRACTED_MARKER).write_text(digest + "\n", encoding="utf-8")
                    try:
                        os.rename(tmp, final)
                    except OSError:
                        if not (final / _EXTRACTED_MARKER).is_file():  # not a concurrent winner
                            raise
                finally:
                    if tmp.exists():
                        shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        return [f"{path.name}: damaged or unsupported zip ({_first_line(exc)})"], None
    except OSError as exc:
        return [f"{path.name}: cannot be extracted into {cache_dir} ({_first_line(exc)})"], None
    final = final.resolve()
    if (final / MANIFEST).exists():
        return [], final
    entries = [p for p in final.iterdir() if p.name not in (_EXTRACTED_MARKER, "__MACOSX")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return [], entries[0]
    return [f"{path.name}: no {MANIFEST} at the zip's root or inside exactly one top folder"], None


def _extract_plan(zf: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], dest: Path) -> None:
    """Write the checked entries under ``dest``, never following links, never past the
    sizes the entries declare."""
    dest_resolved = dest.resolve()
    for info, parts in plan:
        if parts[0] == "__MACOSX":
            continue
        target = dest.joinpath(*parts)
        if not _within(target.resolve(), dest_resolved):  # cannot happen after the checks
            raise OSError(f"entry {info.filename!r} would land outside the extraction folder")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(info) as src, open(target, "xb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                written += len(block)
                if written > info.file_size:
                    raise zipfile.BadZipFile(f"entry {info.filename!r} is larger than it declares")
                out.write(block)


# --------------------------------------------------------------------------- saving


def _is_bundle_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n.strip("/") for n in zf.namelist()]
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n == MANIFEST or (n.count("/") == 1 and n.endswith("/" + MANIFEST)) for n in names)


def _check_overwrite(target: Path, as_zip: bool) -> None:
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink():
        raise InputError(f"refusing to overwrite {target}: it is a symbolic link")
    if as_zip:
        if target.is_dir() or not _is_bundle_zip(target):
            raise InputError(f"refusing to overwrite {target}: it is not a subject bundle zip")
        return
    if not target.is_dir():
        raise InputError(f"refusing to overwrite {target}: it is a file, not a subject bundle folder")
    if any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise InputError(f"refusing to overwrite {target}: the folder is not empty and holds no {MANIFEST}")


def _swap_in_folder(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, replacing an existing bundle folder there."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_zip(folder: Path, target: Path) -> None:
    """Zip ``folder``'s files at the archive root (deterministic: sorted names, fixed
    timestamps), written to a temporary file then renamed over ``target``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp_name, "w", allowZip64=True) as zf:
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                arcname = file.relative_to(folder).as_posix()
                info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED if file.suffix == ".json" else zipfile.ZIP_STORED
                size = file.stat().st_size
                with open(file, "rb") as src, zf.open(info, "w", force_zip64=size > 2 ** 31 - 1) as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
