"""How a panel answers: its strategy and the strategy's settings, as data.

Two systems in one engine. *fusion* (the default) is Fusion's: every seat answers,
a judge analyses, a synthesizer writes one answer. The others are Fusion A's and
its users': *vote* (weighted voting with a confidence), *route* (a router sends the
question, or its parts, to the seats tagged for it), *gate* (one seat first; the
panel only when it is unsure), *escalate* (tier 1 first; tier 2 only when tier 1
disagrees), *verify* (candidates checked by running them: code against the
question's tests, a computation by a program, else the most self-consistent seat).
The engine's side lives in chat/engine/strategies/.

This module is the one place that knows the settings: their defaults, their
bounds, the words that explain them, and the validation that names the field.
Builder, recipes and panel snapshots all go through `clean_settings`.
"""

from dataclasses import dataclass

FUSION, VOTE, ROUTE, GATE, ESCALATE = "fusion", "vote", "route", "gate", "escalate"
VERIFY = "verify"

CHOICES = [
    (FUSION, "Fusion: every seat answers, a judge compares, a synthesizer writes one answer"),
    (VOTE, "Vote: every seat answers, the weighted majority's answer wins"),
    (ROUTE, "Route: a router sends the question (or its parts) to the seats tagged for it"),
    (GATE, "Gate: the first seat answers; the rest only when it is unsure"),
    (ESCALATE, "Escalate: tier 1 answers; tier 2 only when tier 1 disagrees"),
    (VERIFY, "Verify: seats sample; answers are checked by running them, never rewritten"),
]
NAMES = [name for name, _ in CHOICES]

CATEGORIES = ["reasoning", "code", "factual", "creative", "other"]
MAX_SUBQUESTIONS = 4


class SettingsError(ValueError):
    """A strategy setting that cannot be used; `field` names it for the form."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Setting:
    name: str
    label: str
    help: str
    # "fraction" (a number from low to high, 0–1 by default) | "count" | "bool" | "choice"
    # | "categories"
    kind: str
    default: object
    low: float = 0
    high: float = 1
    choices: tuple[str, ...] = ()


SETTINGS: dict[str, tuple[Setting, ...]] = {
    FUSION: (),
    VOTE: (
        Setting(
            "use_judge_scores",
            "Weigh votes by the judge's scores",
            "A judge call scores every answer first; each vote then counts its seat's weight "
            "times the score. Off: seat weights alone.",
            "bool",
            False,
        ),
    ),
    ROUTE: (
        Setting(
            "categories",
            "Categories",
            "What the router may call a question. Tag each seat with the ones it is expert at.",
            "categories",
            list(CATEGORIES),
        ),
        Setting(
            "threshold",
            "Router confidence needed",
            "Below this (0–1) the router is not trusted and the whole panel answers.",
            "fraction",
            0.5,
        ),
        Setting(
            "max_subquestions",
            "Split into sub-questions (at most)",
            "0: never split. Else the router may split a question into up to this many parts, "
            "each sent to its own experts; the synthesis covers them all.",
            "count",
            0,
            0,
            MAX_SUBQUESTIONS,
        ),
    ),
    GATE: (
        Setting(
            "threshold",
            "Confidence needed",
            "At or above this (0–1) the first seat's answer is final and nothing else is "
            "called; below it the rest of the panel answers.",
            "fraction",
            0.7,
        ),
        Setting(
            "cross_check",
            "Cross-check with the second seat",
            "The second seat answers too, and agreement between the two counts toward the "
            "confidence (two calls instead of one).",
            "bool",
            False,
        ),
        Setting(
            "fallback",
            "When unsure",
            "How the whole panel finishes the run when the first seat is not confident.",
            "choice",
            FUSION,
            choices=(FUSION, VOTE),
        ),
    ),
    ESCALATE: (
        Setting(
            "trigger",
            "Escalate when",
            "contradiction: the judge finds tier 1's answers contradict each other. vote: "
            "tier 1's vote share is below the threshold.",
            "choice",
            "contradiction",
            choices=("contradiction", "vote"),
        ),
        Setting(
            "threshold",
            "Vote share needed (vote trigger)",
            "With the vote trigger: tier 2 is asked when tier 1's winning share is below this.",
            "fraction",
            0.75,
        ),
    ),
    VERIFY: (
        Setting(
            "samples",
            "Extra samples per seat",
            "Each seat also answers this many more times at the sampling temperature; the "
            "samples are candidates too, and their agreement is the seat's confidence.",
            "count",
            2,
            0,
            8,
        ),
        Setting(
            "temperature",
            "Sampling temperature",
            "The temperature of the extra samples (0.6–1.5): independent draws need some.",
            "fraction",
            0.8,
            0.6,
            1.5,
        ),
        Setting(
            "computed_weight",
            "Weight of a computed answer",
            "For a computation, each seat also writes a program; the answer it prints weighs "
            "this many times a stated answer (1–5).",
            "fraction",
            2.0,
            1.0,
            5.0,
        ),
        Setting(
            "max_sandbox_runs",
            "Sandbox runs per run (at most)",
            "Every candidate's code or program is one run in the sandbox; past this many, the "
            "rest are not run and the decision says so.",
            "count",
            30,
            1,
            100,
        ),
    ),
}


def defaults(strategy: str) -> dict:
    return {s.name: s.default for s in SETTINGS.get(strategy, ())}


def clean_settings(strategy: str, raw: dict | None, seats: list[dict] | None = None) -> dict:
    """The strategy's settings with defaults filled in and every value checked.
    `seats` ({"tags", "tier"} each) lets the panel-wide rules be checked too."""
    if strategy not in SETTINGS:
        raise SettingsError("strategy", f"must be one of {', '.join(NAMES)}")
    raw = raw or {}
    if not isinstance(raw, dict):
        raise SettingsError("settings", "must be an object")
    known = {s.name for s in SETTINGS[strategy]}
    if unknown := sorted(set(raw) - known):
        raise SettingsError(unknown[0], f"is not a setting of the {strategy} strategy")
    clean = {}
    for setting in SETTINGS[strategy]:
        clean[setting.name] = _value(setting, raw.get(setting.name, setting.default))
    if seats is not None:
        _check_panel(strategy, clean, seats)
    return clean


def _value(setting: Setting, value):
    name = setting.name
    if setting.kind == "bool":
        if not isinstance(value, bool):
            raise SettingsError(name, "must be true or false")
        return value
    if setting.kind in ("fraction", "count"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(name, f"must be a number from {setting.low:g} to {setting.high:g}")
        if not setting.low <= value <= setting.high:
            raise SettingsError(
                name, f"is {value:g}; it must be from {setting.low:g} to {setting.high:g}"
            )
        return int(value) if setting.kind == "count" else float(value)
    if setting.kind == "choice":
        if value not in setting.choices:
            raise SettingsError(name, f"must be one of {', '.join(setting.choices)}")
        return value
    # categories: a short list of short lowercase words
    if not isinstance(value, list) or not value or len(value) > 12:
        raise SettingsError(name, "must list 1 to 12 categories")
    words = []
    for item in value:
        word = str(item).strip().lower() if isinstance(item, str) else ""
        if not word or len(word) > 30 or not word.replace("-", "").replace("_", "").isalnum():
            raise SettingsError(name, f"{item!r} is not a category name (a short word)")
        if word not in words:
            words.append(word)
    return words


def _check_panel(strategy: str, settings: dict, seats: list[dict]) -> None:
    if strategy == ROUTE:
        if not any(seat.get("tags") for seat in seats):
            raise SettingsError(
                "seats", "route needs at least one seat tagged with a category it is expert at"
            )
        categories = set(settings["categories"])
        for i, seat in enumerate(seats, start=1):
            if unknown := sorted(set(seat.get("tags") or []) - categories):
                raise SettingsError(
                    f"seats[{i}].tags", f"{unknown[0]!r} is not one of the panel's categories"
                )
    if strategy == GATE and len(seats) < 2:
        raise SettingsError("seats", "gate needs at least two seats: one to try, one to ask after")
    if strategy == GATE and settings["cross_check"] and len(seats) < 3:
        raise SettingsError(
            "cross_check", "needs at least three seats: the first, its cross-check, and the rest"
        )
    if strategy == ESCALATE:
        tiers = [seat.get("tier") or 1 for seat in seats]
        if 1 not in tiers:
            raise SettingsError("seats", "escalate needs at least one seat in tier 1")
        if 2 not in tiers:
            raise SettingsError("seats", "escalate needs at least one seat in tier 2 to ask")
