"""Generate the small synthetic sample dataset bundled with ticketflow.

This script writes ``sample_tickets.csv`` next to itself: about 420 fake IT /
customer-support tickets with the columns ``ticket_id, subject, body, tags,
category, priority, answer``, built from the texts in ``sample_texts.json``.
The real ticket data is never committed to the repository, so this sample lets
``make run``, the tests and the examples work anywhere without access to it.

The data is fully synthetic and deterministic (``random.Random(7)``), built
from templates with slot fillers, varied openings and sign-offs, casual
phrasing and occasional typos. To keep it realistic it deliberately contains:

* ambiguous tickets whose text mixes two queues (labelled with one of them),
* a little label noise on category (~4%) and priority (~5%),
* a handful of bodies with fake e-mail addresses / 555 phone numbers (for
  personal-data masking tests), using only example.com / example.org,
* three exact duplicate tickets that differ only in ``ticket_id``.

Usage:
    python data/make_sample.py
"""

import csv
import json
import random
from functools import partial
from pathlib import Path

SEED = 7
OUT_PATH = Path(__file__).resolve().parent / "sample_tickets.csv"
COLUMNS = ["ticket_id", "subject", "body", "tags", "category", "priority", "answer"]
CATEGORIES = ["Hardware", "Access", "Network", "Software", "Billing", "HR Support", "Purchase"]
PRIORITIES = ["high", "medium", "low"]
HINTS = {"h": "high", "m": "medium", "l": "low"}

# Rows generated from clean (single-category) templates, per category.
CLEAN_COUNTS = {
    "Hardware": 66,
    "Access": 61,
    "Network": 58,
    "Software": 57,
    "Billing": 49,
    "HR Support": 45,
    "Purchase": 47,
}
N_AMBIGUOUS = 34
N_DUPLICATES = 3
CATEGORY_NOISE = 0.04
PRIORITY_NOISE = 0.05
ANSWER_RATE = 0.70
SUBJECT_MATCH = 0.8

# The ticket texts (slot fillers, greetings, details, urgency phrases, typos, intents with their subjects, bodies
# and answers, ambiguous pairs, bad lines) live in sample_texts.json beside this script; the order of every list
# and mapping there is part of the seed's output.
TEXTS = json.loads((Path(__file__).resolve().parent / "sample_texts.json").read_text(encoding="utf-8"))
FILLERS = TEXTS["fillers"]
OPENINGS = TEXTS["openings"]
CLOSINGS = TEXTS["closings"]
GENERIC_DETAILS = TEXTS["generic_details"]
# IT queues share the IT details after their own.
CATEGORY_DETAILS = {
    category: own + (TEXTS["it_details"] if category in TEXTS["it_categories"] else [])
    for category, own in TEXTS["category_details"].items()
}
MODIFIERS = TEXTS["modifiers"]
MODIFIER_RATE = {"high": 0.55, "medium": 0.25, "low": 0.4}
TYPOS = TEXTS["typos"]
PII_SNIPPETS = TEXTS["pii_snippets"]
# Per category: intents. Within an intent, subjects[i] and answers[i] belong to bodies[i] (extra subjects are
# generic); bodies are [priority hint, text] pairs.
INTENTS = TEXTS["intents"]
# Tickets whose text fits two queues ("cats"); each gets labelled with one of the pair at random.
AMBIGUOUS = TEXTS["ambiguous"]
# Rows a real export carries too, so that `make run` shows ingest keeping bad rows aside: empty text, a
# missing label, an id used twice, and a line with one field too many.
BAD_LINES = TEXTS["bad_lines"]


def make_slots(rng: random.Random) -> dict:
    """Pick one random value for every template slot.

    Args:
        rng: Seeded random generator.

    Returns:
        Mapping from slot name to filler text.
    """
    slots = {key: rng.choice(values) for key, values in FILLERS.items()}
    slots["inv"] = f"INV-{rng.randint(10000, 99999)}"
    slots["amount"] = f"${rng.randint(19, 2400)}.{rng.randint(0, 99):02d}"
    slots["n"] = str(rng.randint(2, 12))
    slots["num4"] = str(rng.randint(1000, 9999))
    slots["num5"] = str(rng.randint(10000, 99999))
    return slots


def pick_priority(rng: random.Random, hint: str) -> str:
    """Turn a template's priority hint into a (mostly matching) priority.

    Args:
        rng: Seeded random generator.
        hint: One of ``h``, ``m``, ``l``.

    Returns:
        The priority label.
    """
    base = HINTS[hint]
    roll = rng.random()
    if roll < 0.78:
        return base
    if base == "medium":
        return rng.choice(["high", "low"])
    return "medium" if roll < 0.96 else rng.choice([p for p in PRIORITIES if p not in (base, "medium")])


def add_typo(rng: random.Random, text: str) -> str:
    """Introduce one common misspelling, or swap two letters inside a longer word.

    Args:
        rng: Seeded random generator.
        text: Text to alter.

    Returns:
        The text with one typo.
    """
    words = text.split(" ")
    known = [i for i, w in enumerate(words) if w.lower() in TYPOS]
    if known:
        i = rng.choice(known)
        words[i] = TYPOS[words[i].lower()]
        return " ".join(words)
    long_words = [i for i, w in enumerate(words) if len(w) > 5 and w.isalpha()]
    if not long_words:
        return text
    i = rng.choice(long_words)
    w = words[i]
    j = rng.randint(1, len(w) - 3)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def pick_modifier(rng: random.Random, priority: str) -> str:
    """Maybe pick an urgency phrase; usually it matches the priority, rarely it misleads.

    Args:
        rng: Seeded random generator.
        priority: The ticket's priority.

    Returns:
        A phrase, or an empty string.
    """
    if rng.random() < 0.05:
        return rng.choice(MODIFIERS[rng.choice([p for p in PRIORITIES if p != priority])])
    if rng.random() < MODIFIER_RATE[priority]:
        return rng.choice(MODIFIERS[priority])
    return ""


def compose_body(rng: random.Random, core: str, category: str, priority: str) -> tuple[str, str]:
    """Wrap a core body sentence with an optional greeting, details, urgency phrase and sign-off.

    Args:
        rng: Seeded random generator.
        core: The main body template.
        category: Category used to pick detail sentences.
        priority: Priority used to pick the urgency phrase.

    Returns:
        The body template without sign-off, and the sign-off template (may be empty).
    """
    if rng.random() < 0.2:
        return core, ""
    if core[-1] not in ".!?":
        core += "."
    parts = [rng.choice(OPENINGS), core]
    details = GENERIC_DETAILS + CATEGORY_DETAILS[category]
    n_details = 2 if rng.random() < 0.12 else int(rng.random() < 0.4)
    parts.extend(rng.sample(details, n_details))
    parts.append(pick_modifier(rng, priority))
    return " ".join(p for p in parts if p), rng.choice(CLOSINGS)


def compose_subject(rng: random.Random, template: str, priority: str) -> str:
    """Apply casual variations (prefixes, lower case) to a subject template.

    Args:
        rng: Seeded random generator.
        template: The subject template.
        priority: The ticket's priority.

    Returns:
        The subject template (slots still unfilled).
    """
    roll = rng.random()
    if priority == "high" and roll < 0.2:
        template = rng.choice(["URGENT: ", "urgent - ", "!! "]) + template
    elif priority == "low" and roll < 0.1:
        template = rng.choice(["Question: ", "Quick q: "]) + template
    elif roll > 0.96:
        template = "RE: " + template
    if rng.random() < 0.12:
        template = template.lower()
    return template


def make_tags(rng: random.Random, pool: list) -> str:
    """Pick 1-3 tags from a pool (sometimes none) and join them with ``;``.

    Args:
        rng: Seeded random generator.
        pool: Candidate tags.

    Returns:
        The joined tag string.
    """
    if rng.random() < 0.08:
        return ""
    k = rng.randint(1, min(3, len(pool)))
    return ";".join(rng.sample(pool, k))


def render(rng: random.Random, category: str, spec: dict) -> dict:
    """Build one ticket row from a template spec.

    The subject usually matches the chosen body (same index) and sometimes is another subject of the
    same intent; the answer always matches the body.

    Args:
        rng: Seeded random generator.
        category: The label to assign.
        spec: Template with ``tags``, ``subjects``, ``bodies`` and ``answers``.

    Returns:
        A row dict (without ticket_id).
    """
    slots = make_slots(rng)
    k = rng.randrange(len(spec["bodies"]))
    hint, core = spec["bodies"][k]
    priority = pick_priority(rng, hint)
    subject_tpl = spec["subjects"][k] if rng.random() < SUBJECT_MATCH else rng.choice(spec["subjects"])
    subject = compose_subject(rng, subject_tpl, priority).format(**slots)
    main_tpl, closing_tpl = compose_body(rng, core, category, priority)
    closing = closing_tpl.format(**slots)
    body = " ".join(p for p in (main_tpl.format(**slots), closing) if p)
    if rng.random() < 0.12:
        body = add_typo(rng, body)
    if rng.random() < 0.04:
        subject = add_typo(rng, subject)
    if rng.random() < 0.05:
        body = body.lower()
    answer = spec["answers"][k].format(**slots) if rng.random() < ANSWER_RATE else ""
    tags = make_tags(rng, spec["tags"])
    return {
        "subject": subject,
        "body": body,
        "tags": tags,
        "category": category,
        "priority": priority,
        "answer": answer,
        "_closing": closing,
    }


def render_intent(rng: random.Random, category: str) -> dict:
    """Build one row from a random intent of a category.

    Args:
        rng: Seeded random generator.
        category: Category whose intents to use (and the label).

    Returns:
        A row dict (without ticket_id).
    """
    return render(rng, category, rng.choice(INTENTS[category]))


def unique_row(rng: random.Random, seen: set, make) -> dict:
    """Call ``make`` until it returns a row whose subject+body has not been seen yet.

    Args:
        rng: Seeded random generator.
        seen: Set of (subject, body) pairs already used; updated in place.
        make: Callable taking ``rng`` and returning a row dict.

    Returns:
        A new, unique row.

    Raises:
        RuntimeError: If no unique row is found after many attempts.
    """
    for _ in range(200):
        row = make(rng)
        key = (row["subject"], row["body"])
        if key not in seen:
            seen.add(key)
            return row
    raise RuntimeError("could not generate a unique ticket")


def clean_rows(rng: random.Random, seen: set) -> list:
    """Generate the single-category rows.

    Args:
        rng: Seeded random generator.
        seen: Set of used (subject, body) pairs.

    Returns:
        List of row dicts.
    """
    rows = []
    for category, count in CLEAN_COUNTS.items():
        make = partial(render_intent, category=category)
        rows.extend(unique_row(rng, seen, make) for _ in range(count))
    return rows


def ambiguous_rows(rng: random.Random, seen: set) -> list:
    """Generate rows whose text mixes two categories, labelled with one of them.

    Args:
        rng: Seeded random generator.
        seen: Set of used (subject, body) pairs.

    Returns:
        List of row dicts flagged with ``_ambiguous``.
    """
    rows = []
    for i in range(N_AMBIGUOUS):
        spec = AMBIGUOUS[i % len(AMBIGUOUS)]
        row = unique_row(rng, seen, lambda r, s=spec: render(r, r.choice(s["cats"]), s))
        row["_ambiguous"] = True
        rows.append(row)
    return rows


def apply_noise(rng: random.Random, rows: list) -> None:
    """Flip the category of ~4% of rows and the priority of ~5% to another random value.

    Args:
        rng: Seeded random generator.
        rows: Rows to modify in place.
    """
    for i in rng.sample(range(len(rows)), round(CATEGORY_NOISE * len(rows))):
        rows[i]["category"] = rng.choice([c for c in CATEGORIES if c != rows[i]["category"]])
        rows[i]["_noise_category"] = True
    for i in rng.sample(range(len(rows)), round(PRIORITY_NOISE * len(rows))):
        rows[i]["priority"] = rng.choice([p for p in PRIORITIES if p != rows[i]["priority"]])
        rows[i]["_noise_priority"] = True


def add_pii(rng: random.Random, rows: list) -> None:
    """Insert a fake e-mail address or 555 phone number into a few bodies (before the sign-off).

    Args:
        rng: Seeded random generator.
        rows: Rows to modify in place.
    """
    for i, snippet in zip(rng.sample(range(len(rows)), len(PII_SNIPPETS)), PII_SNIPPETS, strict=True):
        body, closing = rows[i]["body"], rows[i]["_closing"]
        if closing and body.lower().endswith(closing.lower()):
            cut = len(body) - len(closing)
            rows[i]["body"] = f"{body[:cut]}{snippet} {body[cut:]}"
        else:
            rows[i]["body"] = f"{body} {snippet}"
        rows[i]["_pii"] = True


def add_duplicates(rng: random.Random, rows: list) -> list:
    """Insert exact copies of a few rows at random positions.

    Args:
        rng: Seeded random generator.
        rows: Rows to copy from.

    Returns:
        A new list including the duplicates.
    """
    candidates = [i for i, r in enumerate(rows) if not r.get("_pii")]
    copies = [dict(rows[i], _duplicate=True) for i in rng.sample(candidates, N_DUPLICATES)]
    out = list(rows)
    for copy in copies:
        out.insert(rng.randint(0, len(out)), copy)
    return out


def build_rows(seed: int = SEED) -> list:
    """Build the full, shuffled list of sample tickets with ticket ids.

    Args:
        seed: Random seed.

    Returns:
        List of row dicts (extra bookkeeping keys start with ``_``).
    """
    rng = random.Random(seed)
    seen: set = set()
    rows = clean_rows(rng, seen) + ambiguous_rows(rng, seen)
    rng.shuffle(rows)
    apply_noise(rng, rows)
    add_pii(rng, rows)
    rows = add_duplicates(rng, rows)
    for n, row in enumerate(rows, start=1):
        row["ticket_id"] = f"TCK-{n:05d}"
    return rows


def write_csv(rows: list, path: Path) -> None:
    """Write rows to a UTF-8 CSV file with newline (LF) line endings, then the deliberately bad lines.

    Args:
        rows: Row dicts.
        path: Output file.
    """
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row[c] for c in COLUMNS])
        f.writelines(line + "\n" for line in BAD_LINES)


def main() -> None:
    """Generate the sample dataset and print a short summary."""
    rows = build_rows()
    write_csv(rows, OUT_PATH)
    flags = ["_ambiguous", "_noise_category", "_noise_priority", "_pii", "_duplicate"]
    summary = ", ".join(f"{f.strip('_')}={sum(1 for r in rows if r.get(f))}" for f in flags)
    print(f"wrote {len(rows)} rows to {OUT_PATH} ({summary})")


if __name__ == "__main__":
    main()
