"""A long answer reduced to its final short answer, for voting: by rule where the
form is clear (a number, yes/no, a choice letter, a few words), else None and the
judge model is asked. Then normalised, so that "Forty-two.", "42" and "42.0" are
one vote."""

import re

_NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?"
_MARKER = re.compile(
    r"(?:final answer|the answer is|answer is|answer:|result is|equals|is equal to)\s*"
    r"[:=]?\s*\**\s*([^\n]+?)\s*\**\s*(?:[.!;\n]|$)",
    re.IGNORECASE,
)
_BOXED = re.compile(r"\\boxed\{([^{}]+)\}")
_CHOICE = re.compile(r"^\(?([A-H])(?:[).:]|\s*$)")
_OPTION = re.compile(r"\b(?:option|choice|answer)\s+\(?([A-H])\)?(?![a-z])", re.IGNORECASE)
_YES_NO = re.compile(r"^(yes|no)\b", re.IGNORECASE)
_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
    "twenty": "20",
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70}
_TENS |= {"eighty": 80, "ninety": 90}
SHORT_WORDS = 6
SHORT_WORKING = 120  # characters


def _plain(text: str) -> str:
    text = re.sub(r"[*_`#>]", "", text)
    return " ".join(text.split())


def extract(text: str) -> str | None:
    """The final short answer of `text` when a rule finds it, else None."""
    plain = _plain(text)
    if not plain:
        return None
    if boxed := _BOXED.findall(text):
        return boxed[-1].strip()
    if marked := _MARKER.findall(plain):
        return marked[-1].strip()
    if yes_no := _YES_NO.match(plain):
        return yes_no.group(1)
    if choice := _CHOICE.match(plain):
        return choice.group(1)
    if option := _OPTION.findall(plain):
        return option[-1].upper()
    numbers = re.findall(_NUMBER, plain)
    if numbers and len(plain) <= SHORT_WORKING:
        return numbers[-1]  # a short worked answer ends with its result: "5 × 4 = 20."
    if len(plain.split()) <= SHORT_WORDS:
        return plain.rstrip(".!")
    return None


def numbers_in_words(words: list[str]) -> list[str]:
    """Numbers in words to digits: "forty two" → "42"; other words unchanged."""
    out: list[str] = []
    for word in words:
        small = _WORDS.get(word)
        if out and out[-1].isdigit() and int(out[-1]) in _TENS.values() and small:
            out[-1] = str(int(out[-1]) + int(small))
        elif word in _TENS:
            out.append(str(_TENS[word]))
        else:
            out.append(small or word)
    return out


def normalise(answer: str) -> str:
    """One spelling per answer: case, articles, punctuation, number formats."""
    text = answer.strip().lower().replace("−", "-")
    text = re.sub(r"^(?:the|a|an)\s+", "", text)
    if re.fullmatch(r"\(?[a-h]\)?[.)]?", text):
        return text.strip("().").upper()
    text = " ".join(numbers_in_words(re.split(r"[\s-]+", text)))
    number = re.fullmatch(rf"\s*({_NUMBER})\s*%?\s*", text)
    if number:
        value = number.group(1).replace(",", "")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        return value
    text = re.sub(r"[^\w\s.-]", "", text)
    return " ".join(text.split()).strip(".")
