"""Navigation: heading arithmetic (with the wrap-around fix), geometry, action spaces, the study's
step interface pinned on hand-written replies (rewards worked out from its `step_rewards_virl`),
whole routes played its way, and the whole-route score."""

from __future__ import annotations

import json

import pytest

from unift import tasks
from unift.tasks.navigation import (
    HEADINGS,
    MAX_ACTION_CHARS,
    MAX_ACTIONS,
    RELATIONS,
    STEP,
    parse_actions,
    read_field,
    relative_turn,
    where,
    wrap,
)


@pytest.mark.parametrize(
    ("d", "turn"),
    [
        (90, "right"),
        (-90, "left"),
        (45, "slightly right"),
        (-45, "slightly left"),
        (0, "slightly left"),
        (135, "right"),
        (-135, "left"),
        (180, "right"),
        (-180, "right"),
        (46, "right"),
        (-46, "left"),
        # the published code compared raw differences; wrapped, these are small turns
        (45 - 315, "right"),
        (315 - 45, "left"),
        (0 - 315, "slightly right"),
        (315 - 0, "slightly left"),
        (270, "left"),
        (-270, "right"),
        (405, "slightly right"),
    ],
)
def test_relative_turn_wraps_the_heading_change(d, turn):
    assert relative_turn(d) == turn
    assert -180 < wrap(d) <= 180


def test_routes_follow_the_grid_and_landmarks_match_the_geometry():
    task = tasks.get("navigation", p_intersection=0.3, p_distractor=0.4)  # the harder city too
    for p in task.problems(200):
        points, k = p["points"], 0
        for leg in p["legs"]:
            h = HEADINGS.index(leg["heading"])
            for m in range(1, leg["moves"] + 1):  # each move is one grid step along the heading
                step = [points[k + m]["xy"][i] - points[k + m - 1]["xy"][i] for i in (0, 1)]
                assert step == list(STEP[h]) and points[k + m]["heading"] == leg["heading"]
            k += leg["moves"]
            assert [leg["landmark"], leg["relation"]] in points[k]["landmarks"]
            assert sum(leg["landmark"] in str(q["landmarks"]) for q in points) == 1  # seen only there
        assert k == len(points) - 1 and not points[0]["intersection"] and not points[-1]["intersection"]
        turns = [p["start_heading"]] + [leg["heading"] for leg in p["legs"]]
        for before, leg in zip(turns, p["legs"], strict=False):
            d = 45 * (HEADINGS.index(leg["heading"]) - HEADINGS.index(before))
            assert leg["turn"] == relative_turn(d) and wrap(d) not in (0, 180)
        assert 0 <= p["t"] < len(points) and task.expected(p)[p["t"]][0] == p["t"]  # one action per point
    assert set(RELATIONS.values()) == {"front", "right front", "right", "right behind", "behind",
                                       "left behind", "left", "left front"}
    assert where("Joe's Pizza", "left front") == "Joe's Pizza is on your left front"


def test_by_default_intersections_and_landmarks_mark_the_turns_only():
    task = tasks.get("navigation")
    for p in task.problems(100):
        turns = {i for i, a in task.expected(p) if a.startswith("turn")}
        assert {i for i, q in enumerate(p["points"]) if q["intersection"]} == turns - {0}
        assert {i for i, q in enumerate(p["points"]) if q["landmarks"]} == (turns - {0}) | {len(p["points"]) - 1}


def test_action_spaces_differ_and_instructions_do_not():
    absolute, relative = tasks.get("navigation"), tasks.get("navigation", variant="relative")
    assert absolute.variants()["relative"]["distribution"] == "ood"
    for p in absolute.problems(50):
        assert absolute.instruction(p) == relative.instruction(p)
        turns_a = {a for _, a in absolute.expected(p) if a.startswith("turn")}
        turns_r = {a for _, a in relative.expected(p) if a.startswith("turn")}
        assert {a[15:-1] for a in turns_a} <= set(HEADINGS)
        assert {a[15:-1] for a in turns_r} <= {"left", "right", "slightly left", "slightly right"}
        space = relative.question(p).split("[Action space]")[1].split("[Observations")[0]
        assert "northeast" in absolute.question(p) and "northeast" not in space


# A hand-written route: start facing north; turn right to face east, 2 points to City Hall (an
# intersection); turn slightly left to face northeast, 1 point to Green Park (the destination).
ROUTE = {
    "start_heading": "north",
    "legs": [
        {"turn": "right", "heading": "east", "landmark": "City Hall", "relation": "left", "moves": 2},
        {"turn": "slightly left", "heading": "northeast", "landmark": "Green Park", "relation": "front",
         "moves": 1},
    ],
    "points": [
        {"xy": [0, 0], "heading": "north", "intersection": False, "landmarks": []},
        {"xy": [1, 0], "heading": "east", "intersection": False, "landmarks": []},
        {"xy": [2, 0], "heading": "east", "intersection": True, "landmarks": [["City Hall", "left"]]},
        {"xy": [3, 1], "heading": "northeast", "intersection": False, "landmarks": [["Green Park", "front"]]},
    ],
}
ABSOLUTE = ["turn_direction(east)", "forward()", "turn_direction(northeast)", "stop()"]
RELATIVE = ["turn_direction(right)", "forward()", "turn_direction(slightly left)", "stop()"]
OBS = ["No landmarks nearby", "No landmarks nearby", "City Hall is on your left; You observe an intersection",
       "Green Park is in front of you"]


def reply(t: int, action: str, obs: str | None = None, trailing_comma: bool = True) -> str:
    """A reply in the study's template (ResponseVIRL): its trailing comma makes it not JSON."""
    obs = OBS[t] if obs is None else obs
    body = f'  "current observation": "{obs}",\n  "current instruction": "...",\n  "action": "{action}"'
    return "{\n" + body + (",\n}" if trailing_comma else "\n}")


# (action space, point t, reply, reward under the study's rules, unift's when it differs on purpose)
STEPS = [
    ("absolute", 0, reply(0, "turn_direction(east)"), 1, None),  # the template, read by the regex
    ("absolute", 0, reply(0, "turn_direction(east)", trailing_comma=False), 1, None),  # strict JSON
    ("absolute", 0, reply(0, "turn_direction(East)"), -1, None),  # the action must match exactly
    ("absolute", 0, reply(0, "turn_direction( east )"), -1, None),  # spaces too
    ("absolute", 0, reply(0, "forward()"), -1, None),  # a turn point; no intersection claimed, none there
    ("absolute", 0, reply(0, "forward()", "No landmarks nearby; You observe an intersection"), -1.5, None),
    ("absolute", 1, reply(1, "forward()"), 1, None),
    ("absolute", 1, reply(1, "stop()"), -1, None),  # stopping early
    ("absolute", 1, reply(1, "turn_direction(east)"), -1, None),  # a turn without an intersection
    ("absolute", 1, reply(1, "stop()", "I see an intersection"), -1.5, None),  # any "intersection"
    ("absolute", 1, reply(1, "stop()", "AN INTERSECTION"), -1, None),  # ... in lower case only
    # at an intersection: the published code compares the claim with the landmark text (never an
    # intersection), so copying the true observation costs -1.5 there and missing it -1; unift
    # compares with the truth
    ("absolute", 2, reply(2, "forward()"), -1.5, -1),
    ("absolute", 2, reply(2, "forward()", "City Hall is on your left"), -1, -1.5),
    ("absolute", 2, reply(2, "turn_direction(northeast)"), 1, None),
    ("absolute", 2, reply(2, "turn_direction(northeast)", "nothing"), 1, None),  # right action: obs not graded
    ("absolute", 2, reply(2, "turn_direction(slightly left)"), -1.5, -1),  # a relative turn on the ID test
    ("absolute", 3, reply(3, "stop()"), 1, None),
    ("absolute", 3, reply(3, "forward()"), -1, None),  # walking past the destination
    ("relative", 0, reply(0, "turn_direction(right)"), 1, None),
    ("relative", 0, reply(0, "turn_direction(east)"), -1, None),  # an absolute heading on the OOD test
    ("relative", 2, reply(2, "turn_direction(slightly left)"), 1, None),
    ("relative", 2, reply(2, "turn_direction(northeast)"), -1.5, -1),  # ditto at an intersection
    ("relative", 2, reply(2, "turn_direction(left)"), -1.5, -1),
    ("absolute", 1, "forward()", -1, None),  # a bare action is not read: no "action" field
    ("absolute", 2, "turn_direction(northeast)", -1, -1.5),  # ... and no intersection claimed
    ("absolute", 1, '{"action":"forward()",}', -1, None),  # neither JSON nor `"action": "`
    ("absolute", 1, '{"action":"forward()"}', 1, None),  # strict JSON needs no space
    ("absolute", 1, reply(1, "stop()") + "\n" + reply(1, "forward()"), -1, None),  # the FIRST action counts
    ("absolute", 1, '{"action": null}', -1, None),
    ("absolute", 1, "I will go on. action: forward()", -1, None),
    ("absolute", 1, "Sure! " + reply(1, "forward()"), 1, None),  # text around it: the regex reads it
]


def test_pinned_cases_are_enough():
    assert len(STEPS) + len(WHOLE_ROUTES) + len(EPISODES) >= 30 and len(STEPS) >= 30


@pytest.mark.parametrize(("space", "t", "text", "study", "ours"), STEPS)
def test_step_rewards_follow_the_studys_rules(space, t, text, study, ours):
    task = tasks.get("navigation", action_space=space)
    score = task.score({**ROUTE, "t": t}, text)
    assert score.reward == (study if ours is None else ours)
    assert score.correct == (score.reward == 1)
    assert score.feedback == "Correct action." if score.correct else score.feedback.startswith(
        "You failed this trial because")


def test_step_prompt_target_and_fields_are_the_studys():
    task = tasks.get("navigation")
    problem = {**ROUTE, "t": 2}
    question = task.question(problem)
    for section in ("[Instruction]", "[Action space]", "[Observations and actions sequence]", "[Output]"):
        assert section in question
    assert "1. First, turn right to face east.\n2. Move forward until you reach next intersection where " \
           "City Hall is on your left.\n3. Turn slightly left to face northeast.\n4. Move forward until you " \
           "reach destination where Green Park is in front of you." in question
    # the correct actions so far (a turn moves on: O_2 is the next point), the current one empty
    assert ("O_1: No landmarks nearby\nA_1: turn_direction(east)\nO_2: No landmarks nearby\nA_2: forward()\n"
            f"O_3: {OBS[2]}\nA_3: \n") in question
    target = task.reference_completion(problem)
    assert target == reply(2, "turn_direction(northeast)").replace('"..."', '"Turn slightly left to face northeast."')
    assert task.current_sentence(ROUTE, 1) == "Move forward until you reach next intersection where City Hall " \
                                               "is on your left."
    assert task.current_sentence(ROUTE, 3).startswith("Move forward until you reach destination")
    assert read_field(target, "action") == "turn_direction(northeast)" and task.score(problem, target).correct
    assert [task.expected(ROUTE)[t][1] for t in range(4)] == ABSOLUTE


def script(answers):
    """A policy answering each conversation with answers[(t, attempt)] in the study's template;
    t is read from the history, the attempt from the conversation's length."""
    def policy(convs):
        out = []
        for conv in convs:
            t = conv[0]["content"].count("\nA_") - 1  # the current point's A_ line is empty
            out.append(reply(t, answers(t, (len(conv) + 1) // 2)))
        return out
    return policy


def test_retries_carry_the_feedback_and_a_mode_matched_request():
    task, seen = tasks.get("navigation"), []

    def policy(convs):
        seen.extend(convs)
        return [reply(0, "forward()", "No landmarks nearby; You observe an intersection")] * len(convs)

    task.run_episodes([ROUTE], policy)
    retry = seen[1]
    assert len(retry) == 3 and retry[1]["role"] == "assistant"
    assert retry[2]["content"] == ("You failed this trial because you are not at any intersection.\n"
                                   + task.retry_instruction) and "JSON object" in task.retry_instruction
    assert "whole action sequence" in tasks.get("navigation", mode="route").retry_instruction


# (action space, policy's answer at (point t, attempt), step_accuracy, route_success): the study
# evaluator's count: correct replies / all replies, plus one wrong reply for a route that ends by
# failing a point twice (its third, ungraded call)
EPISODES = [
    ("absolute", lambda t, a: ABSOLUTE[t], 4 / 4, 1.0),  # every point right at once
    ("relative", lambda t, a: ABSOLUTE[t], 0 / 3, 0.0),  # absolute headings on the OOD test: ends at once
    ("absolute", lambda t, a: ABSOLUTE[t] if a == 2 else "stop()" if t != 3 else "forward()", 4 / 8, 1.0),
    ("absolute", lambda t, a: ABSOLUTE[t] if t < 2 else "forward()", 2 / 5, 0.0),  # ends at point 2
    ("relative", lambda t, a: RELATIVE[t] if t != 3 or a == 2 else "forward()", 4 / 5, 1.0),  # late fix
]


@pytest.mark.parametrize(("space", "answers", "accuracy", "success"), EPISODES)
def test_routes_end_at_the_first_point_failed_twice(space, answers, accuracy, success):
    task = tasks.get("navigation", action_space=space)
    out = task.run_episodes([{**ROUTE, "t": 3}], script(answers))  # a route starts at point 0
    assert out == {"step_accuracy": pytest.approx(accuracy), "route_success": success}


def test_episodes_run_in_batches_and_route_mode_has_none():
    task, sizes = tasks.get("navigation"), []
    oracle, stuck = script(lambda t, a: ABSOLUTE[t]), script(lambda t, a: ABSOLUTE[t] if t < 2 else "forward()")

    def policy(convs):  # route 0 answered by the oracle, route 1 stuck at point 2
        sizes.append(len(convs))
        return [oracle([c])[0] if c[0]["content"].startswith("[Task") and k == 0 else stuck([c])[0]
                for k, c in enumerate(convs)]

    out = task.run_episodes([ROUTE, ROUTE], policy)
    # oracle 4 of 4; stuck 2 right, 2 wrong, 1 ended: (4 + 2) / (4 + 4 + 1)
    assert out == {"step_accuracy": pytest.approx(6 / 9), "route_success": 0.5}
    assert sizes == [2, 2, 2, 2]  # both routes in every round until each is done
    assert tasks.get("navigation", mode="route").run_episodes([ROUTE], policy) == {}


# --- route mode: one completion for the whole route (unift's whole-route score) ---------------

# (action space, written actions or None for no answer block, reward)
WHOLE_ROUTES = [
    ("absolute", ABSOLUTE, 1.0),
    ("relative", ABSOLUTE, 2 / 4),  # absolute headings on the OOD test: both forward/stop right
    ("absolute", ABSOLUTE + ["forward()"], 4 / 5),  # an action after stop() costs
    ("absolute", ABSOLUTE[:3], 3 / 4),  # forgot to stop
    # the old structure (a turn, then forward() at the same point): 2 of 6 positions match
    ("absolute", ["turn_direction(east)", "forward()", "forward()", "turn_direction(northeast)", "forward()",
                  "stop()"], 2 / 6),
    ("absolute", None, 0.0),
]


@pytest.mark.parametrize(("space", "actions", "reward"), WHOLE_ROUTES)
def test_whole_route_score(space, actions, reward):
    task = tasks.get("navigation", action_space=space, mode="route")
    text = "\n".join(actions or []) if actions is None else "<answer>\n" + "\n".join(actions) + "\n</answer>"
    score = task.score(ROUTE, text)
    assert score.reward == pytest.approx(reward) and score.correct == (reward == 1.0)


def test_route_mode_references_and_prompts():
    task = tasks.get("navigation", variant="relative", mode="route")
    assert task.stop_strings == ("</answer>",) and task.min_reward == 0.0
    assert task.reference_completion(ROUTE) == "<answer>\n" + "\n".join(RELATIVE) + "\n</answer>"
    for p in task.problems(100):
        assert "t" not in p and task.score(p, task.reference_completion(p)).correct
        assert "Point 0: " in task.question(p) and "one action per point" in task.question(p)
    assert tasks.get("navigation").problems(5) != task.problems(5)
    with pytest.raises(ValueError, match="mode must be one of"):
        tasks.get("navigation", mode="both")


def test_points_of_a_route_share_its_split():
    task = tasks.get("navigation")
    train = {task.split_key(p) for p in task.problems(300)}
    test = task.problems(50, split="test")
    assert all(task.split_key({**p, "t": 0}) == task.split_key(p) for p in test)
    assert not train & {task.split_key(p) for p in test}
    assert json.loads(task.split_key(test[0])).keys() == {"start_heading", "legs", "points"}


@pytest.mark.parametrize(
    ("text", "actions"),
    [
        ("forward ( ) STOP()", ["forward()", "stop()"]),
        (
            "turn_direction('Slightly  Left ') turn_direction(\"north\")",
            ["turn_direction(slightly left)", "turn_direction(north)"],
        ),
        ("turn_direction( )", ["turn_direction()"]),  # an empty direction: a wrong action
        ("turn_direction(north-east) turn_direction(forward()) ", ["forward()"]),
        ("turn_direction(" + "a" * 21 + ")", []),
        ("turn_direction(" + " " * 70 + "north)", []),  # arguments up to 64 characters
    ],
)
def test_actions_are_parsed(text, actions):
    assert parse_actions(text) == actions


def test_only_the_first_actions_of_an_answer_are_read():
    assert len(parse_actions("stop()" * (MAX_ACTIONS + 5))) == MAX_ACTIONS
    late = " " * (MAX_ACTION_CHARS - 12) + "stop()"  # starts before the cap, ends after it
    assert parse_actions("forward()" + late) == ["forward()"]
