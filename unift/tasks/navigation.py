"""Navigation: V-IRL's route following, in text, through a synthetic grid city.

Study: Chu et al. 2025, "SFT Memorizes, RL Generalizes" (docs/methods.md section 5), language-only
V-IRL; official code github.com/LeslieTrue/SFTvsRL: the environment
`gym/gym_virl/envs/navigation_environment.py`, the reward `utils_rl.step_rewards_virl`, the parser
`utils_general.re_match`, the prompt `Q_VIRL_L` and the reply template `ResponseVIRL` in
`prompt_lib/prompts.py`, the evaluator `evaluation/evaluator/base_evaluator.py` with
`utils_general.StatLogger`. Section "Navigation" of docs/environments.md walks through a route.

A route starts at a point and runs in legs. Each leg turns to one of 8 compass headings (45-degree
steps; never straight on or a U-turn) and moves 1..`max_moves` points along the grid (diagonal
streets included) to the intersection where a named landmark stands. Landmarks sit one grid step
from a point, so their relation to the walker follows from geometry: one of front, right front,
right, right behind, behind, left behind, left, left front. The instruction is the study's
numbered list of sentences, two per leg: "First, turn {relative} to face {absolute}." (later legs
"Turn ...") and "Move forward until you reach next intersection where {landmark} is on your
{relation}." (the last: "... reach destination where ..."). Observation per point: the landmarks
seen ("No landmarks nearby" if none) and "You observe an intersection" at the turning points.

Actions: forward(), stop(), turn_direction(x), with x absolute (ID: north .. northwest) or
relative (OOD: left, right, slightly left, slightly right); the instruction is the same text in
both. One action per point, as in the study: a turn also moves on to the next point, so a route
is turn_direction(x), then forward() at each further point of the leg, ..., and stop() at the
destination. The relative turn comes from the heading change d wrapped into (-180, 180]:
d < -45 left, d > 45 right, -45 <= d <= 0 slightly left, 0 < d <= 45 slightly right.

Two modes (variant parameter `mode`):
- "step" (default, the study's interface): a problem is one point of a route, {"t": k, ...}; the
  prompt is the study's Q_VIRL_L (instruction, action space, the observations and correct
  actions so far) and the reply its JSON object {"current observation", "current instruction",
  "action"}. Reward (the study's `step_rewards_virl`): +1 when "action" is exactly the expected
  action; otherwise -1.5 when the reply's "current observation" mentions an intersection where
  there is none or misses one that is there, else -1. Fields are read as the study reads them:
  the whole reply as JSON, else the first `"action": "..."` (this reads the template's trailing
  comma). `run_episodes` plays whole routes the study's way: 2 graded tries per point (`attempts`,
  the retry gets the verifier's feedback), a correct action moves on, and the route ends at the
  first point that fails both tries. Its metrics: `step_accuracy`, correct replies over all
  replies, where a route that ends by failure counts one more wrong reply (the study's evaluator
  makes a third, ungraded call there and logs it as a wrong step), and `route_success`, the share
  of routes finished. A model that answers in the wrong action space fails the first turn and
  scores about 0 (the study's SFT arm on its OOD test: 1.3%).
- "route" (an option, unift's whole-route metric): one completion writes the whole action
  sequence, one action per line, in <answer></answer>, given every point's observation up front.
  Reward: position-wise matches over max(expected, written) actions, so actions after stop() cost;
  correct: the exact sequence. This is far more lenient than the study's per-step accuracy: a
  model writing absolute headings on the relative test still gets every forward() right.

Differences from the reference:
- A synthetic grid city instead of V-IRL's New York routes and street views: headings, landmarks
  and intersections are generated, and routes are shorter (2-4 legs of 1-3 moves; V-IRL
  interpolates up to 5 points per leg, half of them dropped). Optionally (`p_intersection`,
  `p_distractor`, 0 by default as in the study) intersections without a turn and landmarks not
  named in the instruction appear between turns.
- The relative turn wraps the heading change; the published code compares raw differences
  (a turn from 315 to 45 degrees reads as "left").
- The -1.5 check compares the reply with the point's true intersection observation; the
  published code compares it with the landmark text, which never mentions an intersection, so
  there any wrong action whose observation mentions one costs -1.5.
- Training problems are points drawn uniformly from a route with the correct history, where the
  study's PPO trains on the points its own policy reaches.
- Feedback wording is unift's own; like the study's it names the mistake, not the answer.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any

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
# A step reply's fields, read the study's way (`re_match`): first match, one line
_FIELDS = {key: re.compile(rf'"{key}": "(.*?)"') for key in ("action", "current observation")}
INTERSECTION = "You observe an intersection"
MODES = ("step", "route")


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


def read_field(text: str, key: str) -> str | None:
    """A field of a step reply as the study's `re_match` reads it: the whole reply as JSON,
    else the first `"key": "..."` on one line; None when neither holds a string."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict) and key in obj:
        return obj[key] if isinstance(obj[key], str) else None
    m = _FIELDS[key].search(text)
    return m.group(1) if m else None


@register("navigation")
class Navigation(Task):
    defaults = {
        "action_space": "absolute",
        "mode": "step",
        "min_legs": 2,
        "max_legs": 4,
        "max_moves": 3,
        "p_intersection": 0.0,
        "p_distractor": 0.0,
    }
    named_variants = {
        "absolute": variant(ID, "turn_direction takes compass headings"),
        "relative": variant(
            OOD,
            "turn_direction takes left/right/slightly left/slightly right",
            action_space="relative",
        ),
    }
    # Step mode (the default); `__init__` sets route mode's values on the instance.
    min_reward = -1.5  # a wrong action with a wrong intersection observation
    stop_strings = ("}",)  # a step reply is one flat JSON object
    retry_instruction = "Please avoid this mistake and try again, answering with the JSON object in the same format."
    attempts = 2  # graded tries per point in `run_episodes`, as in the study

    def __init__(self, variant: str | None = None, **params: Any):
        super().__init__(variant, **params)
        if self.variant["mode"] == "route":  # a whole sequence scores in [0, 1]
            self.min_reward = 0.0
            self.stop_strings = ("</answer>",)
            self.retry_instruction = (
                "Please try again: write the whole action sequence, one action per point, "
                "inside <answer> </answer> tags."
            )

    def check_variant(self) -> None:
        v = self.variant
        if v["action_space"] not in ("absolute", "relative"):
            raise ValueError("navigation: action_space must be 'absolute' or 'relative'")
        if v["mode"] not in MODES:
            raise ValueError(f"navigation: mode must be one of {list(MODES)}")
        if not (1 <= v["min_legs"] <= v["max_legs"] <= 12) or not 1 <= v["max_moves"] <= 10:
            raise ValueError(
                "navigation: need 1 <= min_legs <= max_legs <= 12, 1 <= max_moves <= 10"
            )

    # --- the city ---------------------------------------------------------------------------
    def generate(self, rng: random.Random) -> dict:
        route = self._route(rng)
        if self.variant["mode"] == "step":
            route["t"] = rng.randrange(len(route["points"]))  # one action per point
        return route

    def _route(self, rng: random.Random) -> dict:
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
        points = [point(False, None, True)]  # the start: no intersection, as in the study
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

    def split_key(self, problem: dict) -> str:
        """The route: every point of a test route is a test problem."""
        return json.dumps({k: v for k, v in problem.items() if k != "t"}, sort_keys=True)

    # --- expected behaviour -------------------------------------------------------------------
    def expected(self, problem: dict) -> list[tuple[int, str]]:
        """(point index, action) for every point of the route: one action per point."""
        out, p = [], 0
        for leg in problem["legs"]:
            x = leg["heading"] if self.variant["action_space"] == "absolute" else leg["turn"]
            out.append((p, f"turn_direction({x})"))  # turns and moves on
            out += [(p + m, "forward()") for m in range(1, leg["moves"])]
            p += leg["moves"]
        return out + [(p, "stop()")]

    def sentences(self, problem: dict) -> list[str]:
        """The instruction, two sentences per leg, as the study words it."""
        out, legs = [], problem["legs"]
        for k, leg in enumerate(legs):
            last = k == len(legs) - 1
            first = "First, turn" if k == 0 and not last else "Turn"
            goal = "destination" if last else "next intersection"
            out.append(f"{first} {leg['turn']} to face {leg['heading']}.")
            out.append(
                f"Move forward until you reach {goal} where {where(leg['landmark'], leg['relation'])}."
            )
        return out

    def instruction(self, problem: dict) -> str:
        return "\n".join(f"{i + 1}. {s}" for i, s in enumerate(self.sentences(problem)))

    def current_sentence(self, problem: dict, t: int) -> str:
        """The sentence being executed at point t: a leg's turn sentence where it starts, its
        move sentence on the way and at the destination (the study's `instruction` field)."""
        start = 0
        for k, leg in enumerate(problem["legs"]):
            if t < start + leg["moves"]:
                return self.sentences(problem)[2 * k + (t > start)]
            start += leg["moves"]
        return self.sentences(problem)[-1]

    @staticmethod
    def observation(point: dict) -> str:
        seen = "; ".join(where(name, relation) for name, relation in point["landmarks"])
        return (seen or "No landmarks nearby") + (f"; {INTERSECTION}" if point["intersection"] else "")

    def action_space(self) -> str:
        xs = HEADINGS if self.variant["action_space"] == "absolute" else RELATIVE
        return (
            '"forward()": moves forward one point\n'
            f'"turn_direction(x)": turns towards x and moves forward one point; x is one of {xs}\n'
            '"stop()": ends the navigation at the destination'
        )

    # --- prompts, replies and scores ----------------------------------------------------------------
    def question(self, problem: dict) -> str:
        return self.step_question(problem) if self.variant["mode"] == "step" else self.route_question(problem)

    def score(self, problem: dict, completion: str) -> Score:
        return self.score_step(problem, completion) if self.variant["mode"] == "step" \
            else self.score_route(problem, completion)

    def solution_steps(self, problem: dict) -> list[str]:
        if self.variant["mode"] == "route":
            pieces = [f"{action}\n" for _, action in self.expected(problem)]
            pieces[0], pieces[-1] = "<answer>\n" + pieces[0], pieces[-1] + "</answer>"
            return pieces
        t = problem["t"]
        return [  # the study's ResponseVIRL template, one hint piece per line
            "{\n",
            f'  "current observation": "{self.observation(problem["points"][t])}",\n',
            f'  "current instruction": "{self.current_sentence(problem, t)}",\n',
            f'  "action": "{self.expected(problem)[t][1]}",\n',
            "}",
        ]

    # --- step mode: one point, the study's interface --------------------------------------------
    def step_question(self, problem: dict) -> str:
        t, points = problem["t"], problem["points"]
        actions = [a for _, a in self.expected(problem)]
        history = "".join(
            f"O_{k + 1}: {self.observation(points[k])}\nA_{k + 1}: {actions[k] if k < t else ''}\n"
            for k in range(t + 1)
        )
        return (
            "[Task Description]\n"
            "You are an expert in navigation. You will receive a sequence of instructions to follow. "
            "You are also provided with your observation and action history in text. Your goal is to "
            "first analyze the instruction and identify the next sentence to be executed. Then, you need "
            "to provide the action to be taken based on the current observation and instruction.\n\n"
            f"[Instruction]\n{self.instruction(problem)}\n\n"
            f"[Action space]\n{self.action_space()}\n\n"
            f"[Observations and actions sequence]\n{history}\n"
            "[Output]\n{\n"
            '  "current observation": latest observation from the observation sequence,\n'
            '  "current instruction": analyze the full instruction and identify the sentence to be executed,\n'
            '  "action": the action to be taken chosen from the action space,\n}'
        )

    def score_step(self, problem: dict, completion: str) -> Score:
        """+1 for the expected action at point `problem["t"]`; -1.5 for a wrong action with a
        wrong intersection observation; -1 otherwise (module docstring)."""
        fail = "You failed this trial because "
        if (bad := self.too_long(completion)) is not None:
            return bad
        t = problem["t"]
        action = read_field(completion, "action")
        if action == self.expected(problem)[t][1]:
            return Score(1.0, True, action, "Correct action.")
        there = problem["points"][t]["intersection"]
        seen = read_field(completion, "current observation") or ""
        if ("intersection" in seen) != there:  # the observation is wrong about the intersection
            place = "you are at an intersection" if there else "you are not at any intersection"
            return Score(-1.5, False, action, f"{fail}{place}.")
        if action is None:
            return Score(-1.0, False, None, fail + 'no "action" was found in your reply.')
        return Score(-1.0, False, action, f"{fail}{action!r} is not the right action here.")

    def run_episodes(self, problems: list[dict], policy: Callable[[list[list[dict]]], list[str]],
                     attempts: int | None = None) -> dict[str, float]:
        """Play each problem's route from its first point the study's way (module docstring):
        `attempts` graded tries per point, the route ending at the first point that fails them
        all. `policy` answers a batch of conversations (one call per round, every unfinished
        route in it). Returns `step_accuracy` and `route_success`; {} in route mode."""
        if self.variant["mode"] != "step" or not problems:
            return {}
        tries = attempts or self.attempts
        # route i -> (its current point as a step problem, the conversation, the attempt)
        active = {i: ({**p, "t": 0}, self.prompt({**p, "t": 0}), 1) for i, p in enumerate(problems)}
        replies = right = ended = finished = 0
        while active:
            order = list(active)
            texts = policy([active[i][1] for i in order])
            for i, text in zip(order, texts, strict=True):
                step, conv, attempt = active.pop(i)
                s = self.score(step, text)
                replies += 1
                if s.correct:
                    right += 1
                    nxt = {**step, "t": step["t"] + 1}
                    if nxt["t"] == len(step["points"]):
                        finished += 1
                    else:
                        active[i] = (nxt, self.prompt(nxt), 1)
                elif attempt < tries:
                    active[i] = (step, retry_messages(self, step, conv, text, s), attempt + 1)
                else:
                    ended += 1  # the study's evaluator makes one more, ungraded call here
        return {"step_accuracy": right / (replies + ended), "route_success": finished / len(problems)}

    # --- route mode: one completion for the whole route --------------------------------------------
    def route_question(self, problem: dict) -> str:
        obs = "\n".join(
            f"Point {i}: {self.observation(p)}" for i, p in enumerate(problem["points"])
        )
        return (
            f"You are walking through a city, following a route instruction. You start at point 0 "
            f"facing {problem['start_heading']}.\nInstruction:\n{self.instruction(problem)}\n"
            f"What you will observe at each point of the route, in order:\n{obs}\n"
            f"Action space, one action per point:\n{self.action_space()}\n"
            "Write the whole action sequence, one action per line, inside <answer> </answer> tags."
        )

    def score_route(self, problem: dict, completion: str) -> Score:
        if (bad := self.too_long(completion)) is not None:
            return bad
        answer = last_block(completion)
        if answer is None:
            return Score(0.0, False, None, "No <answer> </answer> block was found.")
        actions = parse_actions(answer)
        want = [a for _, a in self.expected(problem)]
        if actions == want:
            return Score(1.0, True, actions, "Correct: you reached the destination.")
        right = sum(a == b for a, b in zip(actions, want, strict=False))
        first = next(
            (k for k, (a, b) in enumerate(zip(actions, want, strict=False)) if a != b),
            min(len(actions), len(want)),
        )
        extra = f"; {len(actions) - len(want)} actions too many" if len(actions) > len(want) else ""
        return Score(
            right / max(len(want), len(actions)),
            False,
            actions,
            f"{right} of {len(want)} actions are right{extra}; the first wrong one is action {first + 1}.",
        )
