"""Instruction following with verifiable constraints (IFEval-like), and feedback records.

Problem: {"topic": "city parks", "constraints": [{"type": "bullets", "n": 3}, ...]}. The
prompt asks for a short text on a topic from a small built-in pool under 1-2 constraints (ID)
or 3-4 (OOD). Every constraint type has a checker; `score` = fraction of constraints satisfied,
correct = all of them.

`respond(problem, rng, broken)` writes a response programmatically from the topic's sentences
that satisfies every constraint except those in `broken`, which it violates, and checks itself
with the same checkers (None if no such response exists). From it come:
- demonstrations  {"prompt", "completion"}          (a compliant response)
- preferences     {"prompt", "chosen", "rejected"}  (compliant vs. 1+ constraints violated)
- binary feedback {"prompt", "completion", "label"} (label = all constraints satisfied)
- score feedback  {"prompt", "completion", "score"} (score = fraction satisfied, in [0, 1])
via `records(kind, n, seed)`, in TRL's record format with string prompts. The example files
examples/data/instructions_{sft,preference,binary,score}.jsonl come from
`write_examples("examples/data")`.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable

from .base import ID, OOD, Score, Task, variant
from .registry import register

TOPICS: dict[str, tuple[str, list[str]]] = {  # topic -> (title, sentences)
    "city parks": (
        "green rooms of the city",
        [
            "Parks give people in dense neighbourhoods a place to breathe.",
            "Tall trees cool the streets around them on hot summer days.",
            "Children learn to climb and share on busy playgrounds.",
            "Dog owners meet each other on their morning walks.",
            "A small pond can attract ducks and herons all year.",
            "Benches in the shade are popular with older visitors.",
            "Volunteers often plant flowers along the main paths.",
            "Free concerts bring neighbours together on warm evenings.",
            "Good lighting makes an evening walk feel much safer.",
        ],
    ),
    "learning a language": (
        "words across borders",
        [
            "Learning a new language opens doors to other cultures.",
            "Short daily practice works better than long weekly sessions.",
            "Listening to podcasts trains the ear for natural speech.",
            "Mistakes are a normal part of speaking a new language.",
            "Flashcards help learners remember new vocabulary quickly.",
            "Talking with native speakers builds confidence over time.",
            "Reading simple stories makes grammar feel less abstract.",
            "Watching films with subtitles links sounds to meaning.",
            "Patience matters because fluency grows slowly.",
        ],
    ),
    "home cooking": (
        "the joy of the home kitchen",
        [
            "Cooking at home lets you control what goes into a meal.",
            "A sharp knife makes chopping vegetables safer and faster.",
            "Fresh herbs can lift even the simplest pasta dish.",
            "Planning meals for the week saves both time and money.",
            "Soups are a good way to use leftover vegetables.",
            "Tasting while cooking helps you balance the flavours.",
            "Baking bread teaches patience and careful measuring.",
            "Sharing a homemade dinner turns an evening into an event.",
            "Simple recipes are the best place for beginners to start.",
        ],
    ),
    "the night sky": (
        "lights above us",
        [
            "On a clear night thousands of stars become visible.",
            "The moon changes its shape over a cycle of about a month.",
            "Planets shine steadily while stars seem to twinkle.",
            "A small telescope reveals the rings of Saturn.",
            "Light pollution hides most stars from city dwellers.",
            "Meteor showers happen when Earth crosses old comet trails.",
            "Ancient sailors used the stars to find their way.",
            "The Milky Way looks like a pale river of light.",
            "Patient observers can spot satellites crossing the sky.",
        ],
    ),
    "public libraries": (
        "rooms full of stories",
        [
            "Public libraries lend books to anyone with a card.",
            "Many libraries offer free internet access to visitors.",
            "Reading programs help young children love books early.",
            "Quiet study rooms are valuable for students at exam time.",
            "Librarians help people find reliable information.",
            "Some libraries lend tools and musical instruments too.",
            "Local history collections preserve the memory of a town.",
            "Book clubs at the library connect readers with each other.",
            "Libraries remain one of the few free indoor public spaces.",
        ],
    ),
    "cycling to work": (
        "two wheels to the office",
        [
            "Cycling to work combines exercise with the daily commute.",
            "Bike lanes make riders feel safer in heavy traffic.",
            "A good lock protects your bike while you are at work.",
            "Riding in the morning can improve your mood for the day.",
            "Cyclists avoid traffic jams and parking costs.",
            "Bright lights and a helmet are essential for safety.",
            "Rain gear keeps riders comfortable in bad weather.",
            "Many cities now offer shared bikes near train stations.",
            "Regular maintenance keeps the chain and brakes reliable.",
        ],
    ),
    "ocean life": (
        "beneath the waves",
        [
            "Oceans cover most of the surface of our planet.",
            "Coral reefs shelter a huge variety of fish.",
            "Whales travel thousands of kilometres every year.",
            "Plankton produces a large share of the oxygen we breathe.",
            "Octopuses are known for solving puzzles and escaping tanks.",
            "Deep sea creatures live in complete darkness.",
            "Plastic waste harms turtles and seabirds.",
            "Marine reserves allow fish populations to recover.",
            "Tides are driven mainly by the pull of the moon.",
        ],
    ),
    "board games": (
        "around the table",
        [
            "Board games bring friends and families to the same table.",
            "Strategy games reward careful planning and patience.",
            "Cooperative games ask players to win or lose together.",
            "Simple rules often lead to the most replayable games.",
            "Dice add luck that keeps every round surprising.",
            "Game nights are a cheap way to spend an evening.",
            "Chess has been played for well over a thousand years.",
            "Children practise counting and taking turns through games.",
            "A good host explains the rules before the first move.",
        ],
    ),
    "gardening": (
        "notes from the garden",
        [
            "Gardening connects people with the rhythm of the seasons.",
            "Healthy soil is the foundation of every good garden.",
            "Tomatoes need plenty of sun and regular watering.",
            "Compost turns kitchen scraps into rich food for plants.",
            "Bees visit flowers and help many crops grow.",
            "Weeding a little every day keeps the work manageable.",
            "Raised beds are easier on the back of the gardener.",
            "Seeds saved from this year can be planted next spring.",
            "A small balcony can still grow herbs and salad.",
        ],
    ),
    "sleep": (
        "the quiet hours",
        [
            "Sleep gives the body time to repair itself.",
            "Most adults need between seven and nine hours each night.",
            "Screens before bed can make it harder to fall asleep.",
            "A regular bedtime helps set the internal clock.",
            "Dreams happen mostly during the deeper stages of sleep.",
            "A cool and dark room supports restful nights.",
            "Caffeine late in the day often disturbs sleep.",
            "Short naps can refresh the mind in the afternoon.",
            "Poor sleep affects memory and mood the next day.",
        ],
    ),
}
KEYWORDS = [
    "balance",
    "curiosity",
    "community",
    "routine",
    "wonder",
    "habit",
    "kindness",
    "focus",
    "rhythm",
    "harmony",
]
PHRASES = [
    "Is there anything else I can help with?",
    "Thank you for reading.",
    "Let me know if you have additional questions.",
    "That is all for today.",
]
KEY_SENTENCE = "This is where {} comes in."
COMMA_SENTENCE = "Still, it is worth a second thought."
DIVIDER = "\n\n***\n\n"
TYPES = [
    "lowercase",
    "bullets",
    "word_count",
    "include",
    "exclude",
    "json",
    "ends_with",
    "no_commas",
    "title",
    "paragraphs",
]
CONFLICTS = {
    frozenset(p)
    for p in [
        ("json", "bullets"),
        ("json", "ends_with"),
        ("json", "no_commas"),
        ("json", "title"),
        ("json", "paragraphs"),
        ("bullets", "paragraphs"),
    ]
}


# A bullet: "*" or "-" as the first non-space character of a line, then whitespace and text.
# Leading whitespace stops at the line end: with `^\s*` every line start of a run of blank
# lines scanned the whole run again (quadratic; 100k newlines took 70 s). The count is the same,
# since `^\s*` could only reach the marker on the first non-blank line anyway.
_BULLET = re.compile(r"^[^\S\n]*[*-]\s+\S", re.MULTILINE)


def _words(text: str) -> int:
    return len(re.findall(r"\b\w+\b", text))


def _has(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def _json_ok(text: str) -> bool:
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


def _paragraphs(text: str) -> list[str]:
    return re.split(r"\s?\*\*\*\s?", text)


def _word_bounds_text(c: dict) -> str:
    if c["min"] is not None and c["max"] is not None:
        return f"Answer with at least {c['min']} and at most {c['max']} words."
    if c["min"] is not None:
        return f"Answer with at least {c['min']} words."
    return f"Answer with at most {c['max']} words."


# type -> (checker(text, constraint) -> bool, description(constraint) -> str)
CONSTRAINTS: dict[str, tuple[Callable[[str, dict], bool], Callable[[dict], str]]] = {
    "lowercase": (
        lambda t, c: t == t.lower() and t.strip() != "",
        lambda c: (
            "Your entire response should be in English, and in all lowercase letters. No capital letters are allowed."
        ),
    ),
    "bullets": (
        lambda t, c: len(_BULLET.findall(t)) == c["n"],
        lambda c: (
            f"Your answer must contain exactly {c['n']} bullet points. "
            "Use markdown bullet points such as:\n* This is a point."
        ),
    ),
    "word_count": (
        lambda t, c: (
            (c["min"] is None or _words(t) >= c["min"])
            and (c["max"] is None or _words(t) <= c["max"])
        ),
        _word_bounds_text,
    ),
    "include": (
        lambda t, c: _has(t, c["keyword"]),
        lambda c: f'Include the keyword "{c["keyword"]}" in the response.',
    ),
    "exclude": (
        lambda t, c: not _has(t, c["keyword"]),
        lambda c: f'Do not include the word "{c["keyword"]}" in the response.',
    ),
    "json": (
        lambda t, c: _json_ok(t),
        lambda c: (
            "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```."
        ),
    ),
    "ends_with": (
        lambda t, c: t.strip().endswith(c["phrase"]),
        lambda c: (
            f'Finish your response with this exact phrase: "{c["phrase"]}" No other words should follow it.'
        ),
    ),
    "no_commas": (
        lambda t, c: "," not in t,
        lambda c: "In your entire response, refrain from the use of any commas.",
    ),
    "title": (
        lambda t, c: re.search(r"<<[^\n<>]+>>", t) is not None,
        lambda c: (
            "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>."
        ),
    ),
    "paragraphs": (
        lambda t, c: len(ps := _paragraphs(t)) == c["n"] and all(p.strip() for p in ps),
        lambda c: (
            f"There should be {c['n']} paragraphs. Paragraphs are separated with the markdown divider: ***"
        ),
    ),
}


def check(text: str, constraints: list[dict]) -> list[bool]:
    """One verdict per constraint. Never raises on text input."""
    return [bool(CONSTRAINTS[c["type"]][0](text, c)) for c in constraints]


def respond(problem: dict, rng: random.Random, broken: frozenset[str] = frozenset()) -> str | None:
    """A response satisfying every constraint whose type is not in `broken` and violating
    those that are (verified with the checkers), or None when the search finds none."""
    cs = {c["type"]: c for c in problem["constraints"]}
    title, sentences = TOPICS[problem["topic"]]
    kw_in, kw_out = cs.get("include", {}).get("keyword"), cs.get("exclude", {}).get("keyword")
    pool = [
        s for s in sentences if not (kw_out and _has(s, kw_out)) and not (kw_in and _has(s, kw_in))
    ]
    rng.shuffle(pool)
    lead = [
        KEY_SENTENCE.format(kw)
        for kw, on in ((kw_in, "include" not in broken), (kw_out, "exclude" in broken))
        if kw and on
    ]
    lead += [COMMA_SENTENCE] if "no_commas" in broken else []
    layout, units = "plain", None  # units: how many bullet points or paragraphs
    for kind in ("bullets", "paragraphs"):
        if kind in cs:  # a broken count is one off (n >= 2, so never 0)
            layout, units = kind, cs[kind]["n"] + (rng.choice((-1, 1)) if kind in broken else 0)
    if "json" in cs and "json" not in broken:
        layout = "json"
    sizes = range(max(units or 1, len(lead), 1), len(lead) + len(pool) + 1)
    preferred = rng.randint(3, 6)
    for m in sorted(sizes, key=lambda m: (abs(m - preferred), m)):  # natural lengths first
        used = lead + pool[: m - len(lead)]
        rng.shuffle(used)
        # m sentences dealt round-robin into the units (bullets, paragraphs), into one
        # paragraph for plain text, or one per item of the JSON list
        n_units = units or (1 if layout == "plain" else m)
        parts = [" ".join(used[i::n_units]) for i in range(n_units)]
        if layout == "json":
            text = json.dumps({"topic": problem["topic"], "points": parts}, indent=2)
        elif layout == "bullets":
            text = "\n".join(f"* {p}" for p in parts)
        elif layout == "paragraphs":
            text = DIVIDER.join(parts)
        else:
            text = " ".join(parts)
        if "title" in cs and "title" not in broken:
            text = f"<<{title}>>\n\n{text}"
        if "ends_with" in cs and "ends_with" not in broken:
            text += ("\n\n" if layout != "plain" else " ") + cs["ends_with"]["phrase"]
        if "no_commas" in cs and "no_commas" not in broken:
            text = text.replace(",", "")
        if "lowercase" in cs and "lowercase" not in broken:
            text = text.lower()
        verdicts = check(text, problem["constraints"])
        if all(
            ok != (c["type"] in broken)
            for ok, c in zip(verdicts, problem["constraints"], strict=True)
        ):
            return text
    return None


@register("instructions")
class Instructions(Task):
    defaults = {"min_constraints": 1, "max_constraints": 2, "types": None}
    named_variants = {
        "id": variant(ID, "1-2 constraints of any type"),
        "ood_count": variant(OOD, "3-4 constraints at once", min_constraints=3, max_constraints=4),
    }

    def check_variant(self) -> None:
        v = self.variant
        types = v["types"] or TYPES
        if (
            not set(types) <= set(TYPES)
            or not 1 <= v["min_constraints"] <= v["max_constraints"] <= 5
        ):
            raise ValueError(
                f"instructions: types must come from {TYPES}; 1 <= min_constraints <= max_constraints <= 5"
            )

    def _constraint(self, kind: str, topic: str, rng: random.Random, lowercase: bool) -> dict:
        if kind in ("bullets", "paragraphs"):
            return {"type": kind, "n": rng.randint(2, 5 if kind == "bullets" else 4)}
        if kind == "word_count":
            low, high = rng.choice((20, 30, 40)), rng.choice((50, 60, 80))
            form = rng.choice(("min", "max", "both"))
            return {
                "type": kind,
                "min": low if form != "max" else None,
                "max": high if form != "min" else None,
            }
        if kind == "include":
            return {"type": kind, "keyword": rng.choice(KEYWORDS)}
        if kind == "exclude":
            words = sorted(
                {w.lower() for s in TOPICS[topic][1] for w in re.findall(r"[A-Za-z]{5,}", s)}
            )
            return {"type": kind, "keyword": rng.choice(words)}
        if kind == "ends_with":
            phrase = rng.choice(PHRASES)
            return {"type": kind, "phrase": phrase.lower() if lowercase else phrase}
        return {"type": kind}

    def generate(self, rng: random.Random) -> dict | None:
        v = self.variant
        topic = rng.choice(sorted(TOPICS))
        k = rng.randint(v["min_constraints"], v["max_constraints"])
        kinds: list[str] = []
        for kind in rng.sample(v["types"] or TYPES, len(v["types"] or TYPES)):
            if len(kinds) < k and not any(frozenset((kind, other)) in CONFLICTS for other in kinds):
                kinds.append(kind)
        if len(kinds) < k:
            return None
        constraints = [self._constraint(kind, topic, rng, "lowercase" in kinds) for kind in kinds]
        problem = {"topic": topic, "constraints": constraints}
        return problem if self._reference(problem) is not None else None

    def _reference(self, problem: dict) -> str | None:
        return respond(problem, random.Random(json.dumps(problem, sort_keys=True)))

    def question(self, problem: dict) -> str:
        rules = " ".join(CONSTRAINTS[c["type"]][1](c) for c in problem["constraints"])
        return f"Write a short text about {problem['topic']}. {rules}"

    def prompt_text(self, problem: dict) -> str:
        return f"User: {self.question(problem)}\nAssistant: "

    def score(self, problem: dict, completion: str) -> Score:
        if (bad := self.too_long(completion)) is not None:
            return bad
        verdicts = check(completion, problem["constraints"])
        parsed = {c["type"]: ok for c, ok in zip(problem["constraints"], verdicts, strict=True)}
        failed = [
            CONSTRAINTS[c["type"]][1](c)
            for c, ok in zip(problem["constraints"], verdicts, strict=True)
            if not ok
        ]
        feedback = (
            "All constraints are satisfied." if not failed else "Not satisfied: " + " ".join(failed)
        )
        return Score(sum(verdicts) / len(verdicts), not failed, parsed, feedback)

    def solution_steps(self, problem: dict) -> list[str]:
        text = self._reference(problem)
        if text is None:
            raise ValueError(f"instructions: no compliant response for {problem}")
        return [piece for piece in re.split(r"(?<=\n)|(?<=[.?!] )", text) if piece]


def records(kind: str, n: int, seed: int = 0, split: str = "train", **variant_params) -> list[dict]:
    """`n` feedback records of `kind`: "sft" (alias "demonstration"), "preference", "binary"
    or "score" (see the module docstring). String prompts; deterministic for a seed."""
    kind = "sft" if kind == "demonstration" else kind
    if kind not in ("sft", "preference", "binary", "score"):
        raise ValueError(f"unknown record kind {kind!r}")
    task = Instructions(**variant_params)
    rng = random.Random(f"instructions-records|{kind}|{seed}|{split}")
    out: list[dict] = []
    for problem in task.problems(2 * n + 10, seed=seed, split=split):
        if len(out) == n:
            break
        prompt, chosen = task.question(problem), task.reference_completion(problem)
        types = [c["type"] for c in problem["constraints"]]
        if kind == "sft":
            out.append({"prompt": prompt, "completion": chosen})
            continue
        wanted_bad = kind == "preference" or (kind == "binary" and rng.random() < 0.5)
        low = 1 if wanted_bad else 0
        high = 0 if kind == "binary" and not wanted_bad else len(types)
        broken = frozenset(rng.sample(types, rng.randint(low, high)))
        other = chosen if not broken else respond(problem, rng, broken)
        if other is None:
            continue
        if kind == "preference":
            out.append({"prompt": prompt, "chosen": chosen, "rejected": other})
        elif kind == "binary":
            out.append({"prompt": prompt, "completion": other, "label": not broken})
        else:
            verdicts = check(other, problem["constraints"])
            out.append(
                {"prompt": prompt, "completion": other, "score": sum(verdicts) / len(verdicts)}
            )
    if len(out) < n:
        raise RuntimeError(f"instructions: built only {len(out)} of {n} {kind} records")
    return out


def write_examples(directory: str, n: int = 64, seed: int = 0) -> None:
    """Write instructions_{sft,preference,binary,score}.jsonl (the files in examples/data)."""
    for kind in ("sft", "preference", "binary", "score"):
        with open(f"{directory}/instructions_{kind}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records(kind, n, seed=seed))
