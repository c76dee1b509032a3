"""Mini-DDSM (Kaggle "miniddsm2"): scanned-film mammograms with lesion-outline masks.

Layout: `<tree>/<Status>/<case>/<letter>_<case>_1.<SIDE>_<VIEW>.<ext>` with masks beside their
image as `..._Mask.<ext>`, `..._MASK2.<ext>` (and `_Mask3`.. `_Mask6` in the separate
"more than two masks" set). `DataWMask.xlsx` (sheet "Data") lists every image with
back-slash paths and `-` for "no mask"; without a spreadsheet the folders are scanned.
The masks are 1-pixel outlines saved as JPEG, so they are filled (see `fill_outline`); the
target is the union of an image's masks, and Normal images have an empty one.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import openpyxl

from msunet.data.files import (
    IMAGE_SUFFIXES,
    BadSampleError,
    Entry,
    FileSource,
    check_files,
    find_with_suffix,
)

TREES = ("MINI-DDSM-Complete-PNG-16", "MINI-DDSM-Complete-JPEG-8")  # preferred first
STATUSES = ("Benign", "Cancer", "Normal")
SPREADSHEET = "DataWMask.xlsx"
EXTRA_SPREADSHEETS = "Data-MoreThanTwoMasks*.xlsx"
REQUIRED_COLUMNS = ("fullPath", "Status", "Tumour_Contour")
NO_MASK = ("", "-")
_NAME = re.compile(r"^(?P<letter>[A-Za-z])[_-](?P<number>\d+)[_-]\d+\.(?P<side>LEFT|RIGHT)_"
                   r"(?P<view>[A-Z]+)", re.IGNORECASE)
_MASK = re.compile(r"^(?P<stem>.+?)_mask(?P<n>\d*)$", re.IGNORECASE)


def find_tree(root: str | pathlib.Path) -> pathlib.Path:
    """The folder holding Benign/Cancer/Normal: `root` itself or one of its Kaggle trees."""
    root = pathlib.Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Mini-DDSM root {str(root)!r} is not a directory")
    for candidate in (*(root / tree for tree in TREES), root):
        if any((candidate / status).is_dir() for status in STATUSES):
            return candidate
    raise FileNotFoundError(f"{root} is not a Mini-DDSM root: found no {'/'.join(STATUSES)} "
                            f"folders in it or in {' or '.join(TREES)}")


def case_id(file_name: str) -> str:
    """The patient of an image: scanner letter + case number, e.g. 'C_0029'."""
    match = _NAME.match(file_name)
    return f"{match['letter'].upper()}_{match['number']}" if match else pathlib.Path(
        file_name).stem


def _read_sheet(path: pathlib.Path) -> list[dict[str, Any]]:
    """Rows of sheet "Data" (or the first sheet) as dicts keyed by the header row."""
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many types for a damaged file
        raise BadSampleError(path, f"unreadable spreadsheet ({error})") from error
    sheet = workbook["Data"] if "Data" in workbook.sheetnames else workbook.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = [str(name).strip() if name is not None else "" for name in next(rows, ())]
    records = [dict(zip(header, row, strict=False)) for row in rows if any(row)]
    workbook.close()
    return records


def _resolve(base: pathlib.Path, listed: str) -> pathlib.Path:
    """A spreadsheet path (back-slashes, maybe another image suffix) under `base`."""
    path = base.joinpath(*str(listed).strip().replace("\\", "/").split("/"))
    return find_with_suffix(path) or path


def _mask_columns(row: dict[str, Any]) -> list[str]:
    return [str(row[key]).strip() for key in sorted(row) if key.startswith("Tumour_Contour")
            and row[key] is not None and str(row[key]).strip() not in NO_MASK]


def _meta(status: str, name: str, row: dict[str, Any] | None) -> dict[str, Any]:
    match = _NAME.match(name)
    meta: dict[str, Any] = {"status": status,
                            "side": match["side"].upper() if match else "",
                            "view": match["view"].upper() if match else ""}
    if row is not None:
        meta |= {"age": row.get("Age"), "density": row.get("Density")}
    return meta


def _entries_from_sheets(tree: pathlib.Path, main: pathlib.Path, extras: list[pathlib.Path],
                         ) -> tuple[list[Entry], list[BadSampleError]]:
    """The images the spreadsheets list, and the rows that list none (as problems)."""
    entries: dict[str, Entry] = {}
    problems: list[BadSampleError] = []
    for sheet in (main, *extras):
        for number, row in enumerate(_read_sheet(sheet), start=2):
            missing = [column for column in REQUIRED_COLUMNS if column not in row]
            if missing and sheet == main:
                raise ValueError(f"{sheet}: missing column(s) {missing}; expected Mini-DDSM's "
                                 "DataWMask.xlsx columns")
            if not row.get("fullPath"):
                reason = (f"missing column(s) {missing}" if missing else "no fullPath")
                problems.append(BadSampleError(sheet, f"row {number}: {reason}; the row is "
                                                      "not used"))
                continue
            image = _resolve(tree, row["fullPath"])
            masks = [_resolve(tree, listed) for listed in _mask_columns(row)]
            masks = [mask if mask.is_file() else _resolve(sheet.parent, listed)
                     for mask, listed in zip(masks, _mask_columns(row), strict=True)]
            key = str(image.with_suffix("")).lower()
            if key in entries:  # the extra sheet adds masks 3-6 to images already listed
                old = entries[key]
                entries[key] = Entry(old.image, tuple(dict.fromkeys((*old.masks, *masks))),
                                     old.case, old.meta)
                continue
            meta = _meta(str(row.get("Status", "")), image.name, row)
            meta["listed_in"] = f"{sheet.name} row {number}"
            entries[key] = Entry(image, tuple(masks), case_id(image.name), meta)
    return list(entries.values()), problems


def unparsed_names(entries: list[Entry]) -> list[BadSampleError]:
    """A problem for every image whose name gives no case id: split alone, as its own
    "patient", its other views could land in another split."""
    return [BadSampleError(entry.image, "file name does not parse to a Mini-DDSM case id "
                                        "(<letter>_<number>_1.<SIDE>_<VIEW>), so its patient "
                                        "is unknown to the patient-level split")
            for entry in entries if not _NAME.match(entry.image.name)]


def _entries_from_folders(tree: pathlib.Path) -> list[Entry]:
    images: dict[pathlib.Path, list[tuple[int, pathlib.Path]]] = {}
    for status in STATUSES:
        for path in sorted((tree / status).glob("*/*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            match = _MASK.match(path.stem)
            if match:
                image = path.with_name(match["stem"] + path.suffix)
                images.setdefault(image, []).append((int(match["n"] or 1), path))
            else:
                images.setdefault(path, [])
    return [Entry(image, tuple(mask for _, mask in sorted(masks)), case_id(image.name),
                  _meta(image.parent.parent.name, image.name, None))
            for image, masks in images.items()]


def _find_spreadsheets(root: pathlib.Path, tree: pathlib.Path,
                       ) -> tuple[pathlib.Path | None, list[pathlib.Path]]:
    folders = list(dict.fromkeys((tree, root, tree.parent)))
    main = next((folder / SPREADSHEET for folder in folders
                 if (folder / SPREADSHEET).is_file()), None)
    extras = sorted({path for folder in folders for pattern in
                     (EXTRA_SPREADSHEETS, f"*/{EXTRA_SPREADSHEETS}")
                     for path in folder.glob(pattern)})
    return main, extras


class MiniDDSM(FileSource):
    """Mini-DDSM as a grain source: `source[i]` -> image (uint8/uint16), filled mask, path, case,
    status, side, view (and age, density from the spreadsheet).

    `root` is the Kaggle folder or one of its trees; the PNG-16 tree is preferred when both
    are there.
    """

    def __init__(self, root: str | pathlib.Path, on_bad_sample: str = "error") -> None:
        self.root = pathlib.Path(root).expanduser()
        self.tree = find_tree(self.root)
        self.spreadsheet, extras = _find_spreadsheets(self.root, self.tree)
        rows: list[BadSampleError] = []
        if self.spreadsheet is not None:
            entries, rows = _entries_from_sheets(self.tree, self.spreadsheet, extras)
        else:
            entries = _entries_from_folders(self.tree)
        if not entries:
            raise FileNotFoundError(f"{self.tree}: no Mini-DDSM images found")
        entries.sort(key=lambda entry: str(entry.image))
        missing = check_files(entries, lambda entry: (
            f" (listed in {entry.meta['listed_in']})" if "listed_in" in entry.meta else ""))
        reported = {problem.path for problem in missing}
        problems = missing + rows + unparsed_names(
            [entry for entry in entries if str(entry.image) not in reported])
        super().__init__(entries, problems, f"Mini-DDSM {self.tree}", on_bad_sample)
