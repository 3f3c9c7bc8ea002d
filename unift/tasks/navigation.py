"""Navigation: V-IRL's route following, in text, through a synthetic grid city.

A route starts at an intersection and runs in legs. Each leg turns to one of 8 compass headings
(45-degree steps; never straight on or a U-turn) and moves 1..`max_moves` points along the grid
(diagonal streets included) to the intersection where a named landmark stands. Landmarks sit
one grid step from a point, so their relation to the walker follows from geometry: one of
front, right front, right, right behind, behind, left behind, left, left front. Points between
turns may be intersections too and may show distractor landmarks; a named landmark is visible
only where the instruction names it.

Instruction, per leg: "Turn {relative} to face {absolute}. Move forward until you reach next
intersection where {landmark} is on your {relation}." (last leg: "... until you reach
destination where ..."). The same text serves both action spaces. Actions: forward(), stop(),
turn_direction(x), with x absolute (ID: north .. northwest) or relative (OOD: left, right,
slightly left, slightly right). The relative turn comes from the heading change d wrapped into
(-180, 180]: d < -45 left, d > 45 right, -45 <= d <= 0 slightly left, 0 < d <= 45 slightly
right (the published code forgot the wrap).

Expected actions: at the start and at every turning intersection `turn_direction(x)` then
`forward()`; `forward()` at every other point; `stop()` at the destination. Two ways to score:
- one completion (`prompt`/`score`): the prompt lists the observation at every point; the model
  writes the whole action sequence, one per line, in <answer></answer>. Reward = per-step
  accuracy (position-wise matches / expected length, in [0, 1]); correct = route success (the
  exact sequence).
- step by step (`step_prompt`/`score_step`/`rollout`): one action per turn, +1 if right and -1
  otherwise, with feedback; `attempts` (2, as in the study) graded tries per step through
  `retry_messages`. After a failed step the walker still takes the right action, so every step
  is graded; per-step accuracy = steps solved / steps, success = all solved.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from .base import ID, OOD, Score, Task, last_block, retry_messages, variant
from .registry import register

HEADINGS = ["north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest"]
STEP = [(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)]  # per heading
RELATIONS = {
    0: "front",
    45: "right front",
    90: "right",
    135: "right behind",
    180: "behind",
    -135: "left behind",
    -90: "left",
    -45: "left front",
}
RELATIVE = ["left", "right", "slightly left", "slightly right"]
LANDMARKS = [
    "Joe's Pizza",
    "Central Library",
    "Blue Bottle Coffee",
    "Union Bank",
    "City Hall",
    "Grand Hotel",
    "Green Park",
    "Corner Bakery",
    "Fire Station 9",
    "Lincoln High School",
    "Harbor Museum",
    "Starlight Cinema",
    "Golden Dragon Restaurant",
    "Main Post Office",
    "Maple Pharmacy",
    "Riverside Gym",
    "Sunrise Diner",
    "Oak Street Market",
    "Metro Bookstore",
    "St. Mary's Church",
    "Ace Hardware",
    "Bella Salon",
    "Civic Theater",
    "Pier 7 Seafood",
    "Northside Clinic",
    "Atlas Bike Shop",
    "Tower Records",
    "Lotus Yoga Studio",
    "Chase ATM",
    "Hillside Laundromat",
    "Vista Apartments",
    "Liberty Flower Shop",
    "Summit Bank",
    "Crown Bagels",
    "Echo Music Hall",
    "Pine Tree Hostel",
    "Delta Gas Station",
    "Mercy Hospital",
    "Nova Electronics",
    "Rose Garden Cafe",
]
# Linear: possessive whitespace (never given back) and a bounded argument, read by `direction`.
# The single pattern `turn_direction\s*\(\s*['"]?([a-z ]{1,20}?)['"]?\s*\)` let two `\s*` and
# the lazy group share one run of spaces: "turn_direction(" + 20k spaces + "x" took 27 s
# (quadratic). Both accept the same actions, with arguments up to 64 characters.
_ACTION = re.compile(r"(forward|stop)\s*+\(\s*+\)|turn_direction\s*+\(([^()]{0,64})\)", re.I)
_DIRECTION = re.compile(r"[a-z ]{1,20}", re.I)
_QUOTES = ("'", '"')
MAX_ACTIONS = 200  # actions read from one completion
MAX_ACTION_CHARS = 10_000  # characters read from one answer: room for MAX_ACTIONS actions


def wrap(d: int) -> int:
    """An angle in degrees wrapped into (-180, 180]."""
    d = (d + 180) % 360 - 180
    return 180 if d == -180 else d


def relative_turn(d: int) -> str:
    d = wrap(d)
    if d < -45:
        return "left"
    if d > 45:
        return "right"
    return "slightly left" if d <= 0 else "slightly right"


def where(name: str, relation: str) -> str:
    """E.g. "Starbucks is on your left front" or "Starbucks is in front of you"."""
    if relation in ("front", "behind"):
        return f"{name} is {'in front of' if relation == 'front' else 'behind'} you"
    return f"{name} is on your {relation}"


def direction(argument: str) -> str | None:
    """The normalised direction of `turn_direction(argument)`, or None when the argument is
    not whitespace, an optional quote, 1-20 letters or spaces, an optional quote, whitespace
    (the letters may be spaces only: "turn_direction( )" reads as an empty direction)."""
    core = argument.strip()
    if not core:  # all whitespace: the direction is a run of spaces
        return "" if " " in argument else None
    if core in _QUOTES:  # one quote, with the direction's spaces right before or after it
        i = argument.index(core)
        return "" if " " in (argument[i - 1 : i], argument[i + 1 : i + 2]) else None
    core = core[1:] if core.startswith(_QUOTES) else core
    core = core[:-1] if core.endswith(_QUOTES) else core
    return " ".join(core.lower().split()) if _DIRECTION.fullmatch(core) else None


def parse_actions(text: str) -> list[str]:
    """Actions in order, normalised: "forward()", "stop()", "turn_direction(slightly left)".
    Reads the first MAX_ACTION_CHARS characters and at most MAX_ACTIONS actions. A direction
    is up to 20 letters and spaces, optionally quoted, with whitespace around."""
    out = []
    for m in _ACTION.finditer(text, 0, MAX_ACTION_CHARS):
        if len(out) >= MAX_ACTIONS:
            break
        if m.group(1):
            out.append(f"{m.group(1).lower()}()")
            continue
        if (x := direction(m.group(2))) is not None:
            out.append(f"turn_direction({x})")
    return out


@register("navigation")
class Navigation(Task):
    defaults = {
        "action_space": "absolute",
        "min_legs": 2,
        "max_legs": 4,
        "max_moves": 3,
        "p_intersection": 0.3,
        "p_distractor": 0.4,
    }
    named_variants = {
        "absolute": variant(ID, "turn_direction takes compass headings"),
        "relative": variant(
            OOD,
            "turn_direction takes left/right/slightly left/slightly right",
            action_space="relative",
        ),
    }
    min_reward = -1.0  # a step's reward; `score` of a whole sequence lies in [0, 1]
    floor_reward = 0.0  # an unreadable or overrunning completion of a whole sequence
    stop_strings = ("</answer>",)  # the one-completion format; step replies have no tags
    attempts = 2
    retry_instruction = "Please try again: reply with one action."

    def check_variant(self) -> None:
        v = self.variant
        if v["action_space"] not in ("absolute", "relative"):
            raise ValueError("navigation: action_space must be 'absolute' or 'relative'")
        if not (1 <= v["min_legs"] <= v["max_legs"] <= 12) or not 1 <= v["max_moves"] <= 10:
            raise ValueError(
                "navigation: need 1 <= min_legs <= max_legs <= 12, 1 <= max_moves <= 10"
            )

    # --- the city ---------------------------------------------------------------------------
    def generate(self, rng: random.Random) -> dict:
        v = self.variant
        names = iter(rng.sample(LANDMARKS, len(LANDMARKS)))
        heading = rng.randrange(8)  # index into HEADINGS; degrees = 45 * index
        x, y = 0, 0

        def point(intersection: bool, landmark: str | None, distractor: bool) -> dict:
            seen = [landmark] if landmark else []
            if distractor and rng.random() < v["p_distractor"]:
                seen.append(next(names))
            marks = [[m, RELATIONS[wrap(45 * rng.randrange(8) - 45 * heading)]] for m in seen]
            return {
                "xy": [x, y],
                "heading": HEADINGS[heading],
                "intersection": intersection,
                "landmarks": marks,
            }

        start_heading = HEADINGS[heading]
        points = [point(True, None, True)]
        legs = []
        for _ in range(rng.randint(v["min_legs"], v["max_legs"])):
            new = rng.choice([h for h in range(8) if wrap(45 * (h - heading)) not in (0, 180)])
            turn = relative_turn(45 * (new - heading))
            heading = new
            moves = rng.randint(1, v["max_moves"])
            for m in range(moves):
                x, y = x + STEP[heading][0], y + STEP[heading][1]
                if m < moves - 1:
                    points.append(point(rng.random() < v["p_intersection"], None, True))
            points.append(point(True, next(names), False))
            legs.append(
                {
                    "turn": turn,
                    "heading": HEADINGS[heading],
                    "landmark": points[-1]["landmarks"][0][0],
                    "relation": points[-1]["landmarks"][0][1],
                    "moves": moves,
                }
            )
        points[-1]["intersection"] = False  # the destination is a place, not a crossing
        return {"start_heading": start_heading, "legs": legs, "points": points}

    # --- expected behaviour -------------------------------------------------------------------
    def expected(self, problem: dict) -> list[tuple[int, str]]:
        """(point index, action) for every step of the route."""
        out, p = [], 0
        for leg in problem["legs"]:
            x = leg["heading"] if self.variant["action_space"] == "absolute" else leg["turn"]
            out += [(p, f"turn_direction({x})"), (p, "forward()")]
            out += [(p + m, "forward()") for m in range(1, leg["moves"])]
            p += leg["moves"]
        return out + [(p, "stop()")]

    def instruction(self, problem: dict) -> str:
        parts = []
        for k, leg in enumerate(problem["legs"]):
            goal = "destination" if k == len(problem["legs"]) - 1 else "next intersection"
            parts.append(
                f"Turn {leg['turn']} to face {leg['heading']}. Move forward until you reach "
                f"{goal} where {where(leg['landmark'], leg['relation'])}."
            )
        return " ".join(parts)

    @staticmethod
    def observation(point: dict) -> str:
        seen = [f"{where(name, relation)}." for name, relation in point["landmarks"]]
        return " ".join(
            (["You observe an intersection."] if point["intersection"] else [])
            + (seen or ["No landmarks nearby."])
        )

    def action_space(self) -> str:
        xs = HEADINGS if self.variant["action_space"] == "absolute" else RELATIVE
        return (
            "forward() moves to the next point; stop() ends the route at the destination; "
            f"turn_direction(x) turns on the spot to x, one of: {', '.join(xs)}. "
            "Where the instruction asks for a turn, turn first, then move forward."
        )

    # --- one completion for the whole route -----------------------------------------------------
    def question(self, problem: dict) -> str:
        obs = "\n".join(
            f"Point {i}: {self.observation(p)}" for i, p in enumerate(problem["points"])
        )
        return (
            f"You are walking through a city, following a route instruction. You start at point 0 "
            f"facing {problem['start_heading']}.\nInstruction: {self.instruction(problem)}\n"
            f"What you will observe at each point of the route, in order:\n{obs}\n"
            f"Actions: {self.action_space()}\n"
            "Write the whole action sequence, one action per line, inside <answer> </answer> tags."
        )

    def score(self, problem: dict, completion: str) -> Score:
        if (bad := self.too_long(completion)) is not None:
            return bad
        answer = last_block(completion)
        if answer is None:
            return Score(0.0, False, None, "No <answer> </answer> block was found.")
        actions = parse_actions(answer)
        want = [a for _, a in self.expected(problem)]
        right = sum(a == b for a, b in zip(actions, want, strict=False))
        if actions == want:
            return Score(1.0, True, actions, "Correct: you reached the destination.")
        first = next(
            (k for k, (a, b) in enumerate(zip(actions, want, strict=False)) if a != b),
            min(len(actions), len(want)),
        )
        return Score(
            right / len(want),
            False,
            actions,
            f"{right} of {len(want)} actions are right; the first wrong one is action {first + 1}.",
        )

    def solution_steps(self, problem: dict) -> list[str]:
        pieces: dict[int, str] = {}
        for p, action in self.expected(problem):
            pieces[p] = pieces.get(p, "") + action + "\n"
        out = list(pieces.values())
        out[0], out[-1] = "<answer>\n" + out[0], out[-1] + "</answer>"
        return out

    # --- step by step ----------------------------------------------------------------------
    def step_prompt(self, problem: dict, t: int, history: list[str]) -> list[dict]:
        p = self.expected(problem)[t][0]
        done = ", ".join(history) if history else "none yet"
        text = (
            f"You are walking through a city, following a route instruction.\n"
            f"Instruction: {self.instruction(problem)}\nActions: {self.action_space()}\n"
            f"Your previous actions: {done}.\nCurrent observation: {self.observation(problem['points'][p])}\n"
            "Reply with the next action only, e.g. forward()."
        )
        return [{"role": "user", "content": text}]

    def score_step(self, problem: dict, t: int, completion: str) -> Score:
        """+1 for the right action at step t, -1 otherwise; the last action written counts."""
        if not isinstance(completion, str) or len(completion) > 10_000:
            return Score(-1.0, False, None, "The reply is too long; answer with one action.")
        actions = parse_actions(completion[-2000:])
        want = self.expected(problem)[t][1]
        if not actions:
            return Score(
                -1.0,
                False,
                None,
                "No valid action was found; answer with forward(), stop() or turn_direction(x).",
            )
        got = actions[-1]
        if got == want:
            return Score(1.0, True, got, "Correct.")
        options = HEADINGS if self.variant["action_space"] == "absolute" else RELATIVE
        if got.startswith("turn_direction(") and got[15:-1] not in options:
            why = f"{got[15:-1]!r} is not a valid direction; use one of {', '.join(options)}"
        elif want.startswith("turn_direction("):
            why = (
                "you need to turn here"
                if not got.startswith("turn")
                else "you turned to the wrong direction"
            )
        elif want == "stop()":
            why = "you have reached the destination"
        else:
            why = (
                "you have not reached the destination yet"
                if got == "stop()"
                else "there is no turn to make here"
            )
        return Score(-1.0, False, got, f"Incorrect action {got}: {why}.")

    def rollout(
        self, problem: dict, policy: Callable[[list[dict]], str], attempts: int | None = None
    ) -> dict:
        """Run the route step by step with `attempts` graded tries per step."""
        history, solved, rewards = [], [], []
        for t, (_, want) in enumerate(self.expected(problem)):
            messages = self.step_prompt(problem, t, history)
            ok = False
            for _ in range(attempts or self.attempts):
                completion = policy(messages)
                s = self.score_step(problem, t, completion)
                rewards.append(s.reward)
                if s.correct:
                    ok = True
                    break
                messages = retry_messages(self, problem, messages, completion, s)
            solved.append(ok)
            history.append(want)
        return {**route_metrics(solved), "rewards": rewards}


def route_metrics(solved: list[bool]) -> dict:
    """Per-step accuracy and route success from per-step outcomes."""
    return {
        "step_accuracy": sum(solved) / max(len(solved), 1),
        "success": bool(solved) and all(solved),
    }
